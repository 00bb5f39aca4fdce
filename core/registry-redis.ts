/**
 * The device registry in Redis (SENSORPIPE_REDIS_URL), shared by broker nodes, ingest workers, displays
 * and the CLI on several machines. What is in Redis (prefix `sensorpipe:registry` by default):
 *
 *   <prefix>:devices   hash: device id → the device's record as JSON (the file's record schema)
 *   <prefix>:version   integer, incremented by every committed change (absent: no registry yet)
 *   <prefix>:changes   pub/sub channel: the new version, published by the same script that commits it
 *
 * Writes are optimistic and atomic against writers on other machines: a change is computed on a snapshot
 * (version v), and one Lua script applies it only if the version is still v, bumps the version and
 * publishes it; otherwise the change is computed again on a fresh snapshot. Followers (`watch`) reload on
 * every message, after every reconnect of their subscription (messages published while it was down are
 * lost: Redis pub/sub does not queue), and on a slow safety-net timer in case a message is lost anyway.
 * Every record read is checked against the schema of the file: a registry that fails is REGISTRY_CORRUPT,
 * reported, and the previous registry stays in force; so does it while Redis is unreachable. A follower
 * never replaces a registry it had by an empty one because the keys vanished (a flushed Redis, or one
 * restarted without persistence): that is reported as REGISTRY_UNAVAILABLE instead.
 */
import { createRequire } from 'node:module';
import type * as IORedis from 'ioredis';
import type { Redis } from 'ioredis';
import { SensorpipeError, isSensorpipeError } from './errors.ts';
import type { Logger } from './logger.ts';
import { DeviceRecordSchema, Registry, loadRegistry, type DeviceRecord } from './registry.ts';
import type { RegistryStore, RegistryWatchHandle, RegistryWatchOptions } from './registry-store.ts';

export const DEFAULT_REDIS_REGISTRY_PREFIX = 'sensorpipe:registry';
/** The safety-net reload of a follower, for a change notification lost in transit. */
export const DEFAULT_RESYNC_MS = 30_000;
const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
/** Attempts of one `update` against concurrent writers before it gives up with REGISTRY_CONFLICT. */
const MAX_UPDATE_ATTEMPTS = 50;
/** A follower whose reload failed for want of Redis tries again this often until it succeeds. */
const RELOAD_RETRY_MS = 1_000;

/** One consistent snapshot: the version and every record, read atomically. */
const LOAD_SCRIPT = `
local version = redis.call('GET', KEYS[1])
return { version or false, redis.call('HGETALL', KEYS[2]) }
`;

/**
 * Applies a change computed on version ARGV[1] only if the registry is still at that version; then bumps
 * the version and publishes it on the channel (ARGV[2]), in the same atomic step.
 * ARGV[3] = number of records to set, then id/json pairs, then the ids to delete.
 * Returns {1, new version} or {0, current version}.
 */
const COMMIT_SCRIPT = `
local current = redis.call('GET', KEYS[1]) or '0'
if current ~= ARGV[1] then return { 0, current } end
local sets = tonumber(ARGV[3])
for i = 0, sets - 1 do
  redis.call('HSET', KEYS[2], ARGV[4 + 2 * i], ARGV[5 + 2 * i])
end
for i = 4 + 2 * sets, #ARGV do
  redis.call('HDEL', KEYS[2], ARGV[i])
end
local version = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[2], tostring(version))
return { 1, tostring(version) }
`;

interface ScriptCommands {
  sensorpipeRegistryLoad(versionKey: string, devicesKey: string): Promise<[string | null, string[]]>;
  sensorpipeRegistryCommit(versionKey: string, devicesKey: string, ...args: string[]): Promise<[number, string]>;
}

export interface RedisRegistryOptions {
  url: string;
  /** Key prefix (default `sensorpipe:registry`); the keys and the channel are `<prefix>:…`. */
  prefix?: string;
  /**
   * The registry file this deployment used before Redis: while Redis holds no registry yet, a file that
   * lists devices is a migration not done, and loading or changing the registry refuses (CONFIG_INVALID)
   * rather than start every process on an empty registry that locks those devices out.
   */
  legacyFile?: string;
  /** A follower's safety-net reload (default 30 s). */
  resyncMs?: number;
  /** How long a load or change waits for Redis to answer before failing with REGISTRY_UNAVAILABLE (default 5 s). */
  connectTimeoutMs?: number;
  logger?: Logger;
}

interface Snapshot {
  /** undefined: Redis holds no registry (the version key is absent). */
  version: number | undefined;
  registry: Registry;
}

/** The URL without user and password, for logs and errors. */
export function redactRedisUrl(url: string): string {
  try {
    const parsed = new URL(url);
    parsed.username = '';
    parsed.password = '';
    return parsed.toString();
  } catch {
    return 'redis (unparseable URL)';
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A short, printable rendering of a (possibly hostile) hash field name for error messages. */
function shown(field: string): string {
  return JSON.stringify(field.length > 80 ? `${field.slice(0, 80)}…` : field);
}

export class RedisRegistryStore implements RegistryStore {
  readonly location: string;
  readonly prefix: string;
  private readonly keys: { devices: string; version: string; changes: string };
  private readonly commands: Redis;
  private readonly watches = new Set<RegistryWatchHandle>();
  private lastError: Error | undefined;
  private waitingForReady: Promise<void> | undefined;
  private closed = false;

  constructor(private readonly options: RedisRegistryOptions) {
    this.prefix = options.prefix ?? DEFAULT_REDIS_REGISTRY_PREFIX;
    this.location = `${redactRedisUrl(options.url)} (${this.prefix}:*)`;
    this.keys = { devices: `${this.prefix}:devices`, version: `${this.prefix}:version`, changes: `${this.prefix}:changes` };
    this.commands = this.connection('commands');
    this.commands.defineCommand('sensorpipeRegistryLoad', { numberOfKeys: 2, lua: LOAD_SCRIPT });
    this.commands.defineCommand('sensorpipeRegistryCommit', { numberOfKeys: 2, lua: COMMIT_SCRIPT });
  }

  /** The channel a follower listens on (for tests and docs). */
  get channel(): string {
    return this.keys.changes;
  }

  async load(): Promise<Registry> {
    const snapshot = await this.snapshot();
    if (snapshot.version === undefined) await this.refuseUnmigrated();
    return snapshot.registry;
  }

  /**
   * Load, change and commit atomically. When another writer committed in between, `change` runs again on
   * a fresh registry: it must not have effects outside the registry it is given (what it returns is
   * the result of the run that was committed).
   */
  async update<T>(change: (registry: Registry) => T): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const snapshot = await this.snapshot();
      if (snapshot.version === undefined) await this.refuseUnmigrated();
      // Serialised before `change` runs: a change may alter a record in place.
      const before = new Map(snapshot.registry.list().map((record) => [record.id, JSON.stringify(record)]));
      const result = change(snapshot.registry);
      const committed = await this.commit(snapshot, before);
      if (committed) return result;
      if (attempt >= MAX_UPDATE_ATTEMPTS) {
        throw new SensorpipeError('REGISTRY_CONFLICT', `the registry in ${this.location} kept changing under this update (${attempt} attempts); try again`);
      }
      await sleep(5 + Math.random() * 20 * Math.min(attempt, 10));
    }
  }

  /**
   * Puts a whole registry (read from a file) into Redis, in one atomic step. Refuses with
   * REGISTRY_CONFLICT when Redis already holds devices, unless `replace` (then every device not in
   * `registry` is removed from Redis).
   */
  async importRegistry(registry: Registry, options: { replace?: boolean } = {}): Promise<{ devices: number; version: number }> {
    const snapshot = await this.snapshot();
    if (snapshot.registry.size > 0 && options.replace !== true) {
      throw new SensorpipeError('REGISTRY_CONFLICT', `${this.location} already holds ${snapshot.registry.size} devices; pass --replace to overwrite them with the file's`);
    }
    const before = new Map(snapshot.registry.list().map((record) => [record.id, JSON.stringify(record)]));
    const target = new Registry(registry.list());
    const committed = await this.commit({ version: snapshot.version, registry: target }, before, true);
    if (!committed) throw new SensorpipeError('REGISTRY_CONFLICT', `the registry in ${this.location} changed during the import; run it again`);
    const after = await this.snapshot();
    return { devices: after.registry.size, version: after.version ?? 0 };
  }

  watch(onChange: (registry: Registry) => void, options: RegistryWatchOptions = {}): RegistryWatchHandle {
    const handle = this.follow(onChange, options);
    this.watches.add(handle);
    return handle;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const handle of this.watches) handle.close();
    this.watches.clear();
    await quit(this.commands);
  }

  // ---- internals --------------------------------------------------------------------------------------

  private connection(role: 'commands' | 'watch'): Redis {
    // Loaded on first use: ioredis costs every process ~70 ms to load, and most use the registry file.
    const { Redis: RedisClient } = createRequire(import.meta.url)('ioredis') as typeof IORedis;
    const client = new RedisClient(this.options.url, {
      lazyConnect: true,
      // Fail a command at once while Redis is away, rather than queue it: a load or change waits for the
      // connection explicitly (ready()), with a deadline, and a follower keeps its registry meanwhile.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      autoResubscribe: false, // re-subscribed by the follower itself, before it reloads
      connectTimeout: this.options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      retryStrategy: (times) => Math.min(100 * times, 2_000),
      connectionName: `sensorpipe-registry-${role}`,
    });
    client.on('error', (err: Error) => {
      this.lastError = err;
    });
    client.connect().catch(() => {
      // Reported by whoever needs the connection (ready()); ioredis keeps retrying meanwhile.
    });
    return client;
  }

  /** Resolves once the command connection is up, or fails with REGISTRY_UNAVAILABLE after the deadline. */
  private async ready(): Promise<void> {
    if (this.closed) throw new SensorpipeError('REGISTRY_UNAVAILABLE', `the registry store for ${this.location} is closed`);
    if (this.commands.status === 'ready') return;
    // One wait shared by every caller (many changes may wait at once: one listener, not one each).
    this.waitingForReady ??= this.waitForReady().finally(() => {
      this.waitingForReady = undefined;
    });
    await this.waitingForReady;
  }

  private waitForReady(): Promise<void> {
    const timeoutMs = this.options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.commands.off('ready', onReady);
        const reason = this.lastError?.message ?? `status ${this.commands.status}`;
        reject(new SensorpipeError('REGISTRY_UNAVAILABLE', `the device registry is in Redis (SENSORPIPE_REDIS_URL), and ${redactRedisUrl(this.options.url)} did not answer within ${timeoutMs} ms (${reason}): start Redis, or check the URL`));
      }, timeoutMs);
      const onReady = () => {
        clearTimeout(timer);
        resolve();
      };
      this.commands.once('ready', onReady);
    });
  }

  private unavailable(err: unknown): SensorpipeError {
    if (isSensorpipeError(err)) return err;
    return new SensorpipeError('REGISTRY_UNAVAILABLE', `the registry in ${this.location} could not be read or written: ${(err as Error).message}`, undefined, { cause: err });
  }

  private async snapshot(): Promise<Snapshot> {
    await this.ready();
    let reply: [string | null, string[]];
    try {
      reply = await (this.commands as unknown as ScriptCommands).sensorpipeRegistryLoad(this.keys.version, this.keys.devices);
    } catch (err) {
      throw this.unavailable(err);
    }
    return this.parse(reply);
  }

  /** Checks every record with the file's schema; anything wrong fails the whole snapshot (REGISTRY_CORRUPT). */
  private parse([versionText, flat]: [string | null, string[]]): Snapshot {
    const corrupt = (what: string) => new SensorpipeError('REGISTRY_CORRUPT', `the registry in ${this.location} ${what}; it was left untouched, and the previous registry stays in force`);
    let version: number | undefined;
    if (versionText !== null) {
      if (!/^\d{1,15}$/.test(versionText)) throw corrupt(`has a version that is not a number (${this.keys.version})`);
      version = Number(versionText);
    }
    const records: DeviceRecord[] = [];
    for (let i = 0; i + 1 < flat.length; i += 2) {
      const field = flat[i]!;
      let json: unknown;
      try {
        json = JSON.parse(flat[i + 1]!);
      } catch {
        throw corrupt(`holds a record that is not JSON under ${shown(field)}`);
      }
      const parsed = DeviceRecordSchema.safeParse(json);
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        throw corrupt(`holds a malformed record under ${shown(field)} at ${issue?.path.join('.') || '(root)'}: ${issue?.message}`);
      }
      if (parsed.data.id !== field) throw corrupt(`holds the record of ${shown(parsed.data.id)} under ${shown(field)}`);
      records.push(parsed.data);
    }
    return { version, registry: new Registry(records) };
  }

  /** Commits what changed between `before` (JSON by id) and `snapshot.registry`; false when another writer came first. */
  private async commit(snapshot: Snapshot, before: Map<string, string>, always = false): Promise<boolean> {
    const sets: string[] = [];
    const deletes: string[] = [];
    for (const record of snapshot.registry.list()) {
      const json = JSON.stringify(record);
      if (before.get(record.id) === json) continue;
      // Nothing goes into Redis that a reader would refuse.
      const checked = DeviceRecordSchema.safeParse(record);
      if (!checked.success) throw new SensorpipeError('INTERNAL', `refusing to write an invalid record for ${record.id}: ${checked.error.issues[0]?.message}`);
      sets.push(record.id, json);
    }
    for (const id of before.keys()) if (snapshot.registry.get(id) === undefined) deletes.push(id);
    if (sets.length === 0 && deletes.length === 0 && !(always && snapshot.version === undefined)) return true;
    await this.ready();
    let reply: [number, string];
    try {
      reply = await (this.commands as unknown as ScriptCommands).sensorpipeRegistryCommit(
        this.keys.version,
        this.keys.devices,
        String(snapshot.version ?? 0),
        this.keys.changes,
        String(sets.length / 2),
        ...sets,
        ...deletes,
      );
    } catch (err) {
      throw this.unavailable(err);
    }
    return Number(reply[0]) === 1;
  }

  /** Redis holds no registry: fine for a new deployment, a migration not done when the old file lists devices. */
  private async refuseUnmigrated(): Promise<void> {
    const file = this.options.legacyFile;
    if (file === undefined) return;
    const legacy = await loadRegistry(file).catch(() => undefined);
    if (legacy === undefined || legacy.size === 0) return;
    throw new SensorpipeError(
      'CONFIG_INVALID',
      `the device registry is in Redis (SENSORPIPE_REDIS_URL), which holds none yet, while ${file} lists ${legacy.size} devices: move them with \`sensorpipe registry import --from ${file}\` (docs/REGISTRY.md), or move the file away to start with an empty registry`,
    );
  }

  /** A follower: its own subscriber connection, a reload on every message, every reconnect and every `resyncMs`. */
  private follow(onChange: (registry: Registry) => void, options: RegistryWatchOptions): RegistryWatchHandle {
    const logger = this.options.logger;
    const subscriber = this.connection('watch');
    let closed = false;
    /** The version of the registry last handed to onChange (undefined: none yet). */
    let delivered: { version: number | undefined } | undefined;
    let down = false;
    /** The registry vanished from Redis after we had one: whatever version comes next is new to us. */
    let vanished = false;
    let retryTimer: NodeJS.Timeout | undefined;

    const report = (err: Error) => {
      if (!closed) options.onError?.(err);
    };

    const refreshOnce = async (force: boolean): Promise<void> => {
      if (!force && delivered !== undefined) {
        // A cheap check first: the whole registry is read only when its version moved.
        await this.ready();
        const current = await this.commands.get(this.keys.version).catch((err: unknown) => {
          throw this.unavailable(err);
        });
        if (!vanished && current !== null && delivered.version !== undefined && String(delivered.version) === current) return;
      }
      const snapshot = await this.snapshot();
      if (snapshot.version === undefined && (delivered?.version !== undefined || vanished)) {
        // Versions start again at 1 after a flush: the import that follows may bring our old number back.
        vanished = true;
        throw new SensorpipeError(
          'REGISTRY_UNAVAILABLE',
          `the registry is gone from ${this.location} (was Redis flushed, or restarted without persistence?); the previous registry stays in force until it is imported again`,
          { vanished: true },
        );
      }
      if (closed) return;
      vanished = false;
      delivered = { version: snapshot.version };
      onChange(snapshot.registry);
    };

    // Reloads run one at a time, in order; requests made while one waits to start join it.
    let tail: Promise<void> = Promise.resolve();
    let pending: Promise<void> | undefined;
    let pendingForce = false;
    const request = (force: boolean): Promise<void> => {
      if (force) pendingForce = true;
      if (pending !== undefined) return pending;
      const run = tail.then(async () => {
        pending = undefined;
        const forced = pendingForce;
        pendingForce = false;
        if (closed) return;
        try {
          await refreshOnce(forced);
        } catch (err) {
          report(err as Error);
          // Redis away: try again soon. A corrupt or vanished registry waits for the next change (or the
          // safety net), rather than be reported every second.
          const waitsForChange = isSensorpipeError(err, 'REGISTRY_CORRUPT') || (isSensorpipeError(err) && err.details?.vanished === true);
          if (!waitsForChange && !closed && retryTimer === undefined) {
            retryTimer = setTimeout(() => {
              retryTimer = undefined;
              void request(false);
            }, RELOAD_RETRY_MS);
            retryTimer.unref();
          }
        }
      });
      pending = run;
      tail = run;
      return run;
    };

    subscriber.on('message', (channel: string, message: string) => {
      if (channel !== this.keys.changes) return;
      // Only the version in force is skipped: after a flush and a new import, versions start again at 1.
      if (!vanished && delivered?.version !== undefined && message === String(delivered.version)) return;
      void request(false);
    });
    subscriber.on('ready', () => {
      // Subscribed first, then reloaded: a change committed after the SUBSCRIBE is answered reaches us
      // as a message, and one committed before it (while we were away) is in what we reload.
      subscriber.subscribe(this.keys.changes).then(
        () => {
          if (down) logger?.info({ registry: this.location }, 'registry: Redis is back; reloading the registry');
          down = false;
          void request(false);
        },
        (err: unknown) => report(this.unavailable(err)),
      );
    });
    subscriber.on('close', () => {
      if (closed || down) return;
      down = true;
      const err = new SensorpipeError('REGISTRY_UNAVAILABLE', `lost the connection to ${this.location}; the last registry stays in force, and changes are picked up when it is back`);
      logger?.error({ registry: this.location }, 'registry: lost the connection to Redis; keeping the last registry');
      report(err);
    });

    const resync = setInterval(() => void request(false), this.options.resyncMs ?? DEFAULT_RESYNC_MS);
    resync.unref();

    const handle: RegistryWatchHandle = {
      reload: () => request(true),
      connected: () => subscriber.status === 'ready' && !down,
      close: () => {
        if (closed) return;
        closed = true;
        clearInterval(resync);
        if (retryTimer !== undefined) clearTimeout(retryTimer);
        this.watches.delete(handle);
        void quit(subscriber);
      },
    };
    return handle;
  }
}

/** QUIT when connected (replies drain), else just drop the connection and its retries. */
async function quit(client: Redis): Promise<void> {
  if (client.status === 'ready') {
    await client.quit().catch(() => client.disconnect());
  } else {
    client.disconnect();
  }
}

/**
 * The registry in Redis (core/registry-redis.ts) against a real redis-server (Debian package), on its
 * own: concurrent writers on two store instances lose nothing; a corrupt or hostile record is refused and
 * the previous registry stays in force; a follower sees a change within 2 s (pub/sub, the safety net is
 * left at its 30 s); a follower cut off from Redis keeps its registry and catches up when it is back;
 * Redis down at start is a clear error; an empty Redis next to a registry file that lists devices refuses
 * until the file is imported.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { isSensorpipeError } from '../../core/errors.ts';
import { Registry, saveRegistry } from '../../core/registry.ts';
import { RedisRegistryStore } from '../../core/registry-redis.ts';
import { instrumentRegistryStore, openRegistryStore, type RegistryWatchHandle } from '../../core/registry-store.ts';
import { Registry as MetricsRegistry } from 'prom-client';
import { freePort } from '../../harness/ports.ts';
import { waitFor } from '../../harness/publisher.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';
import { startRedis, type RedisServer } from '../broker/redis.ts';
import { startProxy, type CuttableProxy } from './proxy.ts';

/** The bound of issue 18: a change made anywhere is seen everywhere within 2 s. */
const PROPAGATION_MS = 2_000;

let dir: TempDir;
let redis: RedisServer;
let raw: Redis;
const opened: { close(): Promise<void> }[] = [];
const watches: RegistryWatchHandle[] = [];

beforeAll(async () => {
  dir = await tempDir('sensorpipe-registry-redis-');
  redis = await startRedis(dir.path);
  raw = new Redis(redis.url);
});
afterEach(async () => {
  for (const watch of watches.splice(0)) watch.close();
  for (const store of opened.splice(0)) await store.close();
});
afterAll(async () => {
  raw?.disconnect();
  await redis?.stop();
  await dir?.remove();
});

/** A store on its own key prefix, so that tests do not see each other's registries. */
function store(options: { prefix?: string; url?: string; legacyFile?: string; connectTimeoutMs?: number } = {}): RedisRegistryStore {
  const s = new RedisRegistryStore({ url: options.url ?? redis.url, prefix: options.prefix ?? newPrefix(), ...(options.legacyFile ? { legacyFile: options.legacyFile } : {}), connectTimeoutMs: options.connectTimeoutMs ?? 5_000 });
  opened.push(s);
  return s;
}

function newPrefix(): string {
  return `test-${randomBytes(4).toString('hex')}:registry`;
}

/** A follower that records every registry it is handed (as sorted "id:status" lists) and every error. */
function follow(s: RedisRegistryStore) {
  const seen: Registry[] = [];
  const errors: Error[] = [];
  const watch = s.watch((registry) => seen.push(registry), { onError: (err) => errors.push(err) });
  watches.push(watch);
  return { seen, errors, watch, current: () => seen.at(-1) };
}

function statusOf(registry: Registry | undefined, id: string): string | undefined {
  return registry?.get(id)?.status;
}

/** What a hostile or broken writer can do with redis-cli: set a field, bump the version, announce it. */
async function writeRaw(prefix: string, field: string, value: string): Promise<void> {
  await raw.hset(`${prefix}:devices`, field, value);
  const version = await raw.incr(`${prefix}:version`);
  await raw.publish(`${prefix}:changes`, String(version));
}

describe('updates from several writers', () => {
  it('two store instances changing one record and adding devices concurrently lose nothing', async () => {
    const prefix = newPrefix();
    const a = store({ prefix });
    const b = store({ prefix });
    await a.update((registry) => registry.add('counter', { meta: { site: '0' } }));
    const bump = (s: RedisRegistryStore) =>
      s.update((registry) => {
        const record = registry.get('counter')!;
        // In place, as the admin API's metadata update does: the change is computed from what was read.
        record.meta = { ...record.meta, site: String(Number(record.meta.site) + 1) };
      });
    const work: Promise<unknown>[] = [];
    for (let i = 0; i < 20; i++) {
      work.push(bump(a), bump(b));
      work.push(a.update((registry) => registry.add(`from-a-${i}`)), b.update((registry) => registry.add(`from-b-${i}`)));
    }
    await Promise.all(work);
    const final = await a.load();
    expect(final.get('counter')!.meta.site).toBe('40');
    expect(final.size).toBe(41);
    expect(Number(await raw.get(`${prefix}:version`))).toBe(81);
  });

  it('a change that throws (REGISTRY_CONFLICT: the id exists) writes nothing', async () => {
    const prefix = newPrefix();
    const a = store({ prefix });
    await a.update((registry) => registry.add('dev-a'));
    await expect(a.update((registry) => registry.add('dev-a'))).rejects.toMatchObject({ code: 'REGISTRY_CONFLICT' });
    expect(await raw.get(`${prefix}:version`)).toBe('1');
  });
});

describe('records read from Redis are checked like the file', () => {
  it.each([
    ['not JSON', 'evil', '{ not json'],
    ['missing its keys', 'evil', JSON.stringify({ id: 'evil', status: 'active' })],
    ['with an unknown field', 'evil', 'VALID+{"extra":1}'],
    ["another device's record under its id (taking over dev-a's credentials)", 'dev-a', 'VALID-OF:intruder'],
    ['an id that is not a device id', 'EVIL ID', 'VALID-OF:EVIL ID'],
  ])('a record %s is REGISTRY_CORRUPT: reported, counted, and the previous registry stays in force', async (_what, field, value) => {
    const prefix = newPrefix();
    const writer = store({ prefix });
    await writer.update((registry) => {
      registry.add('dev-a');
      registry.add('dev-b');
    });
    const template = (await writer.load()).get('dev-b')!;
    const text = value.startsWith('VALID+')
      ? JSON.stringify({ ...template, ...(JSON.parse(value.slice('VALID+'.length)) as object) })
      : value.startsWith('VALID-OF:')
        ? JSON.stringify({ ...template, id: value.slice('VALID-OF:'.length) })
        : value;

    const metrics = new MetricsRegistry();
    const followerStore = instrumentRegistryStore(store({ prefix }), metrics);
    const seen: Registry[] = [];
    const errors: Error[] = [];
    watches.push(followerStore.watch((registry) => seen.push(registry), { onError: (err) => errors.push(err) }));
    await waitFor(() => seen.length === 1, 'the first registry', PROPAGATION_MS);
    const inForce = seen[0]!;

    await writeRaw(prefix, field, text);
    await waitFor(() => errors.length > 0, 'the corrupt record to be reported', PROPAGATION_MS);
    expect(isSensorpipeError(errors[0], 'REGISTRY_CORRUPT')).toBe(true);
    expect(errors[0]!.message).not.toContain(template.mqtt.hash); // never echoes record contents
    expect(seen).toEqual([inForce]);
    expect(seen.at(-1)!.size).toBe(2);
    expect(await metrics.getSingleMetricAsString('sensorpipe_registry_errors_total')).toContain('code="REGISTRY_CORRUPT"} 1');
    await expect(writer.load()).rejects.toMatchObject({ code: 'REGISTRY_CORRUPT' });
    // Nor is a change written on top of a registry that cannot be read.
    await expect(writer.update((registry) => registry.add('dev-c'))).rejects.toMatchObject({ code: 'REGISTRY_CORRUPT' });

    // Repaired (the record removed, or restored), the next change is followed again.
    if (field === 'dev-a') await raw.hset(`${prefix}:devices`, 'dev-a', JSON.stringify(inForce.get('dev-a')));
    else await raw.hdel(`${prefix}:devices`, field);
    await writer.update((registry) => registry.revoke('dev-b'));
    await waitFor(() => statusOf(seen.at(-1), 'dev-b') === 'revoked', 'the repaired registry', PROPAGATION_MS);
    expect(seen.at(-1)!.get('dev-a')!.mqtt).toEqual(inForce.get('dev-a')!.mqtt);
  });

  it('a registry whose keys vanished (a flushed Redis) is reported, and the previous one stays in force', async () => {
    const prefix = newPrefix();
    const writer = store({ prefix });
    await writer.update((registry) => registry.add('dev-a'));
    const follower = follow(store({ prefix }));
    await waitFor(() => follower.seen.length === 1, 'the first registry', PROPAGATION_MS);
    await raw.del(`${prefix}:devices`, `${prefix}:version`);
    await raw.publish(`${prefix}:changes`, '99');
    await waitFor(() => follower.errors.some((e) => isSensorpipeError(e, 'REGISTRY_UNAVAILABLE')), 'the vanished registry to be reported', PROPAGATION_MS);
    expect(follower.seen).toHaveLength(1);
    expect(follower.current()!.get('dev-a')).toBeDefined();
    // Imported again, the registry starts again at version 1, the number the follower had: it is new anyway.
    const restored = new Registry(follower.current()!.list());
    restored.revoke('dev-a');
    expect((await writer.importRegistry(restored)).version).toBe(1);
    await waitFor(() => statusOf(follower.current(), 'dev-a') === 'revoked', 'the re-imported registry', PROPAGATION_MS);
  });
});

describe('followers', () => {
  it('see an add, a revoke and a rotation made through another store instance within 2 s', async () => {
    const prefix = newPrefix();
    const writer = store({ prefix });
    await writer.update((registry) => registry.add('dev-a'));
    const follower = follow(store({ prefix })); // safety net at its default 30 s: only the notification is fast enough
    await waitFor(() => follower.current()?.get('dev-a') !== undefined, 'the first registry', PROPAGATION_MS);

    await writer.update((registry) => registry.add('dev-new'));
    await waitFor(() => follower.current()?.get('dev-new') !== undefined, 'the added device', PROPAGATION_MS);
    await writer.update((registry) => registry.revoke('dev-a'));
    await waitFor(() => statusOf(follower.current(), 'dev-a') === 'revoked', 'the revocation', PROPAGATION_MS);
    const before = follower.current()!.get('dev-new')!.signing;
    await writer.update((registry) => registry.rotate('dev-new'));
    await waitFor(() => JSON.stringify(follower.current()!.get('dev-new')!.signing) !== JSON.stringify(before), 'the rotation', PROPAGATION_MS);
    expect(follower.errors).toEqual([]);
  });

  it('cut off from Redis, keeps its registry and reports it; back, catches up on what it missed within 2 s', async () => {
    const [host, port] = [new URL(redis.url).hostname, Number(new URL(redis.url).port)];
    const proxy: CuttableProxy = await startProxy({ host, port });
    opened.push(proxy);
    const prefix = newPrefix();
    const writer = store({ prefix });
    await writer.update((registry) => {
      registry.add('dev-a');
      registry.add('dev-b');
    });
    const metrics = new MetricsRegistry();
    const followerStore = instrumentRegistryStore(store({ prefix, url: proxy.url }), metrics);
    const seen: Registry[] = [];
    const errors: Error[] = [];
    const watch = followerStore.watch((registry) => seen.push(registry), { onError: (err) => errors.push(err) });
    watches.push(watch);
    await waitFor(() => seen.length === 1 && watch.connected(), 'the first registry', PROPAGATION_MS);

    proxy.cut();
    await waitFor(() => !watch.connected(), 'the follower to notice the lost connection', 5_000);
    await waitFor(() => errors.some((e) => isSensorpipeError(e, 'REGISTRY_UNAVAILABLE')), 'the lost connection to be reported', 5_000);
    expect(await metrics.getSingleMetricAsString('sensorpipe_registry_connected')).toMatch(/sensorpipe_registry_connected 0/);
    // Changed while the follower cannot hear of it: the notification is lost for it.
    await writer.update((registry) => registry.revoke('dev-a'));
    await writer.update((registry) => registry.add('dev-c'));
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(seen).toHaveLength(1);
    expect(statusOf(seen.at(-1), 'dev-a')).toBe('active');

    proxy.restore();
    await waitFor(() => statusOf(seen.at(-1), 'dev-a') === 'revoked' && seen.at(-1)!.get('dev-c') !== undefined, 'the follower to catch up after the reconnect', PROPAGATION_MS + 2_500);
    expect(watch.connected()).toBe(true);
    // And it follows notifications again.
    await writer.update((registry) => registry.revoke('dev-b'));
    await waitFor(() => statusOf(seen.at(-1), 'dev-b') === 'revoked', 'a change after the reconnect', PROPAGATION_MS);
  });

  it('reloads after its subscription is killed by Redis (CLIENT KILL), and still follows changes', async () => {
    const prefix = newPrefix();
    const writer = store({ prefix });
    await writer.update((registry) => registry.add('dev-a'));
    const follower = follow(store({ prefix }));
    await waitFor(() => follower.seen.length === 1 && follower.watch.connected(), 'the first registry', PROPAGATION_MS);
    const killed = await raw.client('KILL', 'TYPE', 'pubsub');
    expect(Number(killed)).toBeGreaterThanOrEqual(1);
    await writer.update((registry) => registry.revoke('dev-a'));
    await waitFor(() => statusOf(follower.current(), 'dev-a') === 'revoked', 'the revocation after the kill', PROPAGATION_MS + 2_500);
    await writer.update((registry) => registry.add('dev-b'));
    await waitFor(() => follower.current()?.get('dev-b') !== undefined, 'a change after the reconnect', PROPAGATION_MS);
  });
});

describe('starting', () => {
  it('Redis down at start is a clear REGISTRY_UNAVAILABLE that names the URL but not its password', async () => {
    const port = await freePort();
    const s = store({ url: `redis://:hunter2-secret@127.0.0.1:${port}`, connectTimeoutMs: 800 });
    const failure = await s.load().then(() => undefined, (err: unknown) => err as Error);
    expect(isSensorpipeError(failure, 'REGISTRY_UNAVAILABLE')).toBe(true);
    expect(failure!.message).toContain(`127.0.0.1:${port}`);
    expect(failure!.message).not.toContain('hunter2');
    await expect(s.update((registry) => registry.add('dev-a'))).rejects.toMatchObject({ code: 'REGISTRY_UNAVAILABLE' });
  });

  it('refuses an empty Redis while the registry file lists devices, until the file is imported', async () => {
    const file = join(dir.path, `legacy-${randomBytes(3).toString('hex')}.json`);
    const legacy = new Registry();
    legacy.add('old-a');
    legacy.add('old-b');
    legacy.revoke('old-b');
    await saveRegistry(file, legacy);
    const prefix = newPrefix();
    const s = store({ prefix, legacyFile: file });
    await expect(s.load()).rejects.toMatchObject({ code: 'CONFIG_INVALID', message: expect.stringContaining('sensorpipe registry import') });
    await expect(s.update((registry) => registry.add('dev-a'))).rejects.toMatchObject({ code: 'CONFIG_INVALID' });

    expect(await s.importRegistry(legacy)).toEqual({ devices: 2, version: 1 });
    const loaded = await s.load();
    expect(loaded.list()).toEqual(legacy.list());
    await expect(s.importRegistry(legacy)).rejects.toMatchObject({ code: 'REGISTRY_CONFLICT' });
    expect((await s.importRegistry(new Registry([legacy.get('old-a')!]), { replace: true })).devices).toBe(1);
  });

  it('openRegistryStore: the file without a Redis URL, Redis with one', async () => {
    const file = join(dir.path, 'chosen.json');
    const fileStore = openRegistryStore({ registryPath: file });
    expect(fileStore.location).toBe(file);
    const redisStore = openRegistryStore({ registryPath: file, redisUrl: redis.url });
    opened.push(redisStore);
    expect(redisStore).toBeInstanceOf(RedisRegistryStore);
    expect(redisStore.location).toContain('sensorpipe:registry');
  });
});

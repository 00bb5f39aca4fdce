/**
 * The broker's write-ahead log: what its in-memory persistence holds (persistent sessions, the QoS 1
 * messages queued for them, retained messages), on disk, so that a broker killed at any moment (`kill -9`,
 * OOM, power loss) starts again with everything it had acknowledged. A PUBLISH is acknowledged only once
 * the record that queues it is fsynced (broker/intake.ts holds the PUBACK until then).
 *
 * Group commit: records appended while an fsync runs go out together in the next write and fsync, so
 * one fsync covers every PUBLISH that arrived during the previous one (the cost is measured by
 * bench/broker.ts, with the log against without).
 *
 * Files: <data-dir>/broker/log/<generation>.log. A generation starts with a snapshot of the whole state,
 * framed by BEGIN and END records, followed by the operations since then. When the operations outgrow
 * the snapshot, a new generation is written from the state in memory and the old one deleted, so the log
 * stays about as big as what the broker holds. At start the newest generation whose snapshot is complete
 * is replayed; a record cut short at its end (a crash mid-write) was never fsynced, so never acknowledged,
 * and is dropped.
 *
 * Record: u32 length ‖ u32 crc32(body) ‖ body, big-endian; body: u8 kind ‖ u32 meta length ‖ meta ‖
 * payload. The meta is JSON, except for the two records written for every message (enqueue, clear),
 * which are laid out in binary (below): JSON cost ~1.5 µs a record there. Replaying is idempotent (messages are keyed by the broker and counter that queued them),
 * so a record written twice — in a snapshot and again after it — restores the same state.
 */
import { mkdir, open, readdir, readFile, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import type { Subscriber } from './acl.ts';
import type { SessionSubscription, StoredPublish } from './indexed-persistence.ts';
import { ownerFromJson, ownerToJson, type SavedSessions } from './session-file.ts';

const HEADER_BYTES = 8;
/**
 * The layout of the records, in each generation's BEGIN record. A broker refuses a log it cannot read
 * rather than guess (persistence.ts moves it aside and says so): a newer broker that changes the layout
 * must read the older one, or convert it.
 */
export const LOG_FORMAT = 1;
const GENERATION_PATTERN = /^(\d{12})\.log$/;
/** A new generation once the operations since the snapshot pass both of these. */
const COMPACT_MIN_BYTES = 64 * 1024 * 1024;
const COMPACT_SNAPSHOT_FACTOR = 4;

const enum Kind {
  Begin = 1,
  End = 2,
  Enqueue = 3,
  Clear = 4,
  Subscribe = 5,
  Unsubscribe = 6,
  Clean = 7,
  Retain = 8,
}

/** What a queued packet is known by in its queue. */
export interface QueuedIdentity {
  brokerId: string;
  brokerCounter: number;
}

export function logDirOf(dataDir: string): string {
  return join(dataDir, 'broker', 'log');
}

/** A record: its body is `kind`, the meta's length, the meta (written by `writeMeta`), the payload. */
function record(kind: Kind, metaBytes: number, writeMeta: (out: Buffer, at: number) => void, payload?: Buffer): Buffer {
  const payloadBytes = payload?.length ?? 0;
  const out = Buffer.allocUnsafe(HEADER_BYTES + 5 + metaBytes + payloadBytes);
  out[HEADER_BYTES] = kind;
  out.writeUInt32BE(metaBytes, HEADER_BYTES + 1);
  writeMeta(out, HEADER_BYTES + 5);
  if (payload !== undefined) payload.copy(out, HEADER_BYTES + 5 + metaBytes);
  out.writeUInt32BE(out.length - HEADER_BYTES, 0);
  out.writeUInt32BE(crc32(out.subarray(HEADER_BYTES)), 4);
  return out;
}

function frame(kind: Kind, meta: unknown, payload?: Buffer): Buffer {
  const text = JSON.stringify(meta);
  return record(kind, Buffer.byteLength(text), (out, at) => out.write(text, at, 'utf8'), payload);
}

// Binary metas. A string is u16 byte length ‖ UTF-8 (topics and client ids are far below 64 KiB).
const stringBytes = (text: string): number => 2 + Buffer.byteLength(text);
function writeString(out: Buffer, at: number, text: string): number {
  const length = out.write(text, at + 2, 'utf8');
  out.writeUInt16BE(length, at);
  return at + 2 + length;
}
function readString(meta: Buffer, at: number): [string, number] {
  const length = meta.readUInt16BE(at);
  return [meta.toString('utf8', at + 2, at + 2 + length), at + 2 + length];
}

/** Enqueue: u8 qos | retain << 2 ‖ f64 broker counter ‖ broker id ‖ topic ‖ u16 count ‖ client ids. */
function enqueueRecord(clientIds: string[], packet: StoredPublish & QueuedIdentity): Buffer {
  let bytes = 1 + 8 + stringBytes(packet.brokerId) + stringBytes(packet.topic) + 2;
  for (const id of clientIds) bytes += stringBytes(id);
  return record(
    Kind.Enqueue,
    bytes,
    (out, start) => {
      out[start] = (packet.qos & 3) | (packet.retain ? 4 : 0);
      out.writeDoubleBE(packet.brokerCounter, start + 1);
      let at = writeString(out, start + 9, packet.brokerId);
      at = writeString(out, at, packet.topic);
      out.writeUInt16BE(clientIds.length, at);
      at += 2;
      for (const id of clientIds) at = writeString(out, at, id);
    },
    packet.payload,
  );
}

function readEnqueue(meta: Buffer, payload: Buffer): { clientIds: string[]; packet: StoredPublish & QueuedIdentity } {
  const flags = meta[0]!;
  const brokerCounter = meta.readDoubleBE(1);
  const [brokerId, afterId] = readString(meta, 9);
  const [topic, afterTopic] = readString(meta, afterId);
  const count = meta.readUInt16BE(afterTopic);
  const clientIds: string[] = [];
  let at = afterTopic + 2;
  for (let i = 0; i < count; i++) {
    const [id, next] = readString(meta, at);
    clientIds.push(id);
    at = next;
  }
  return { clientIds, packet: { topic, payload, qos: flags & 3, retain: (flags & 4) !== 0, brokerId, brokerCounter } };
}

/** Clear: f64 broker counter ‖ broker id ‖ client id. */
function clearRecord(clientId: string, packet: QueuedIdentity): Buffer {
  return record(Kind.Clear, 8 + stringBytes(packet.brokerId) + stringBytes(clientId), (out, start) => {
    out.writeDoubleBE(packet.brokerCounter, start);
    writeString(out, writeString(out, start + 8, packet.brokerId), clientId);
  });
}

function readClear(meta: Buffer): { clientId: string; key: string } {
  const brokerCounter = meta.readDoubleBE(0);
  const [brokerId, at] = readString(meta, 8);
  return { clientId: readString(meta, at)[0], key: `${brokerId}:${brokerCounter}` };
}

export const records = {
  enqueue: enqueueRecord,
  clear: clearRecord,
  subscribe: (clientId: string, subs: SessionSubscription[], owner: Subscriber | undefined): Buffer => frame(Kind.Subscribe, { c: clientId, s: subs, o: ownerToJson(owner) }),
  unsubscribe: (clientId: string, topics: string[]): Buffer => frame(Kind.Unsubscribe, { c: clientId, t: topics }),
  clean: (clientId: string): Buffer => frame(Kind.Clean, { c: clientId }),
  retain: (packet: StoredPublish): Buffer => frame(Kind.Retain, { t: packet.topic, q: packet.qos }, packet.payload),
};

/** The state a log describes, as it is rebuilt by replaying it. */
class ReplayedState {
  readonly retained = new Map<string, StoredPublish>();
  readonly sessions = new Map<string, { owner?: Subscriber | undefined; subscriptions: Map<string, SessionSubscription>; outgoing: Map<string, StoredPublish> }>();

  #session(clientId: string) {
    let session = this.sessions.get(clientId);
    if (session === undefined) this.sessions.set(clientId, (session = { subscriptions: new Map(), outgoing: new Map() }));
    return session;
  }

  apply(kind: Kind, metaBytes: Buffer, payload: Buffer): void {
    if (kind === Kind.Enqueue) {
      const { clientIds, packet } = readEnqueue(metaBytes, payload);
      for (const clientId of clientIds) this.#session(clientId).outgoing.set(`${packet.brokerId}:${packet.brokerCounter}`, packet);
      return;
    }
    if (kind === Kind.Clear) {
      const { clientId, key } = readClear(metaBytes);
      this.sessions.get(clientId)?.outgoing.delete(key);
      return;
    }
    const meta = JSON.parse(metaBytes.toString('utf8')) as Record<string, unknown>;
    switch (kind) {
      case Kind.Subscribe: {
        const session = this.#session(meta.c as string);
        session.owner = ownerFromJson(meta.o) ?? session.owner;
        for (const sub of meta.s as SessionSubscription[]) session.subscriptions.set(sub.topic, sub);
        return;
      }
      case Kind.Unsubscribe:
        for (const topic of meta.t as string[]) this.sessions.get(meta.c as string)?.subscriptions.delete(topic);
        return;
      case Kind.Clean:
        // As aedes' persistences do: the subscriptions go, the queue stays until the client clears it.
        this.sessions.get(meta.c as string)?.subscriptions.clear();
        return;
      case Kind.Retain:
        if (payload.length === 0) this.retained.delete(meta.t as string);
        else this.retained.set(meta.t as string, { topic: meta.t as string, payload, qos: meta.q as number, retain: true });
        return;
      default:
        return;
    }
  }

  toSaved(): SavedSessions {
    return {
      retained: [...this.retained.values()],
      sessions: [...this.sessions]
        .filter(([, s]) => s.subscriptions.size + s.outgoing.size > 0)
        .map(([clientId, s]) => ({ clientId, owner: s.owner, subscriptions: [...s.subscriptions.values()], outgoing: [...s.outgoing.values()] })),
    };
  }
}

interface ReadGeneration {
  /** Whether its snapshot is complete (BEGIN … END). */
  complete: boolean;
  state: ReplayedState;
  /** Bytes of intact records (anything after is a torn tail). */
  intactBytes: number;
  records: number;
}

function readGeneration(data: Buffer): ReadGeneration {
  const state = new ReplayedState();
  let offset = 0;
  let begun = false;
  let complete = false;
  let count = 0;
  while (offset + HEADER_BYTES <= data.length) {
    const length = data.readUInt32BE(offset);
    const body = data.subarray(offset + HEADER_BYTES, offset + HEADER_BYTES + length);
    if (body.length < length || length < 5 || crc32(body) !== data.readUInt32BE(offset + 4)) break;
    const kind = body.readUInt8(0) as Kind;
    const metaBytes = body.readUInt32BE(1);
    if (5 + metaBytes > body.length) break;
    const meta = body.subarray(5, 5 + metaBytes);
    // Its own copy: the file's buffer is large and would be kept alive by every payload slice.
    const payload = Buffer.from(body.subarray(5 + metaBytes));
    offset += HEADER_BYTES + length;
    count++;
    try {
      if (kind === Kind.Begin) {
        const format = (JSON.parse(meta.toString('utf8')) as { format?: unknown }).format;
        if (format !== LOG_FORMAT) throw new Error(`format ${String(format)}, this broker reads format ${LOG_FORMAT}`);
        begun = true;
      } else if (kind === Kind.End) complete = begun;
      else if (begun) state.apply(kind, meta, payload);
    } catch (err) {
      // Intact on disk (its CRC holds) but not readable by this broker: not a torn tail, so not dropped.
      throw new SessionLogUnreadable(`record ${count} (at byte ${offset - HEADER_BYTES - length}, kind ${kind}): ${(err as Error).message}`);
    }
  }
  return { complete, state, intactBytes: offset, records: count };
}

/** A log whose records are intact but that this broker cannot read (another format, or a bug). */
export class SessionLogUnreadable extends Error {}

export interface ReplayResult {
  saved: SavedSessions | undefined;
  generation: number;
  records: number;
  /** Bytes dropped from the end of the replayed generation: a record cut short by a crash. */
  tornBytes: number;
}

/** Reads the log in `dir`: the newest generation with a complete snapshot (undefined `saved`: no log yet). */
export async function replaySessionLog(dir: string): Promise<ReplayResult> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const generations = (await readdir(dir))
    .map((name) => GENERATION_PATTERN.exec(name))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((a, b) => b - a);
  for (const generation of generations) {
    const path = generationPath(dir, generation);
    const data = await readFile(path);
    let read: ReadGeneration;
    try {
      read = readGeneration(data);
    } catch (err) {
      throw new SessionLogUnreadable(`${path}: ${(err as Error).message}`);
    }
    if (!read.complete) continue; // a crash while this generation's snapshot was written: the older one holds
    return { saved: read.state.toSaved(), generation, records: read.records, tornBytes: data.length - read.intactBytes };
  }
  return { saved: undefined, generation: generations[0] ?? 0, records: 0, tornBytes: 0 };
}

function generationPath(dir: string, generation: number): string {
  return join(dir, `${String(generation).padStart(12, '0')}.log`);
}

/** Everything the broker holds, as records, for the snapshot that starts a generation. */
export function snapshotRecords(state: SavedSessions): Buffer[] {
  const out: Buffer[] = [];
  for (const packet of state.retained) out.push(records.retain(packet));
  for (const session of state.sessions) {
    if (session.subscriptions.length > 0) out.push(records.subscribe(session.clientId, session.subscriptions, session.owner));
    for (const packet of session.outgoing) {
      if (packet.brokerId !== undefined && packet.brokerCounter !== undefined) out.push(records.enqueue([session.clientId], packet as StoredPublish & QueuedIdentity));
    }
  }
  return out;
}

/** Records waiting for the next write, and one promise for all that asked to hear when it is fsynced. */
class Batch {
  readonly records: Buffer[] = [];
  #settled: Promise<void> | undefined;
  #resolve: (() => void) | undefined;
  #reject: ((err: Error) => void) | undefined;

  get durable(): Promise<void> {
    this.#settled ??= new Promise<void>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    return this.#settled;
  }

  resolve(): void {
    this.#resolve?.();
  }

  reject(err: Error): void {
    this.#reject?.(err);
  }
}

export interface SessionLogStats {
  /** fsyncs done, records and bytes written, since start. */
  commits: number;
  records: number;
  bytes: number;
  generations: number;
}

/**
 * The log being written. `append` queues a record; its promise (when asked for) settles once the record
 * is fsynced. Records are written in the order they were appended.
 */
export class SessionLog {
  readonly #dir: string;
  readonly #snapshot: () => SavedSessions;
  readonly #compactMinBytes: number;
  #handle: FileHandle | undefined;
  #generation: number;
  #pending = new Batch();
  /** The batch being written and fsynced, if any. */
  #writing: Batch | undefined;
  #flushing: Promise<void> | undefined;
  #bytesSinceSnapshot = 0;
  #snapshotBytes = 0;
  /** A write failed: the file may end in a torn record, so the next write starts a new generation. */
  #broken = false;
  #closed = false;
  readonly stats: SessionLogStats = { commits: 0, records: 0, bytes: 0, generations: 0 };

  private constructor(dir: string, generation: number, snapshot: () => SavedSessions, compactMinBytes: number) {
    this.#dir = dir;
    this.#generation = generation;
    this.#snapshot = snapshot;
    this.#compactMinBytes = compactMinBytes;
  }

  /**
   * Starts a new generation after `previous` (from `replaySessionLog`) with a snapshot of what
   * `snapshot()` returns — the state just restored — and deletes the older generations.
   */
  static async start(dir: string, previous: number, snapshot: () => SavedSessions, options: { compactMinBytes?: number } = {}): Promise<SessionLog> {
    const log = new SessionLog(dir, previous, snapshot, options.compactMinBytes ?? COMPACT_MIN_BYTES);
    await log.#newGeneration();
    return log;
  }

  /** Queues a record; with `durable`, the promise settles once it is fsynced. */
  append(record: Buffer, durable: true): Promise<void>;
  append(record: Buffer, durable: false): void;
  append(record: Buffer, durable: boolean): Promise<void> | void {
    if (this.#closed) {
      if (durable) return Promise.reject(new Error('the session log is closed'));
      return;
    }
    const batch = this.#pending;
    batch.records.push(record);
    this.#flushing ??= this.#flush();
    return durable ? batch.durable : undefined;
  }

  /** Settles once every record appended so far is fsynced (rejects if its write failed). */
  synced(): Promise<void> {
    if (this.#pending.records.length > 0) return this.#pending.durable;
    return this.#writing?.durable ?? Promise.resolve();
  }

  /** Writes and fsyncs what is queued, then closes the file. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#flushing;
    await this.#handle?.close();
    this.#handle = undefined;
  }

  async #flush(): Promise<void> {
    try {
      while (this.#pending.records.length > 0) {
        const batch = this.#pending;
        this.#pending = new Batch();
        this.#writing = batch;
        try {
          if (this.#broken || this.#bytesSinceSnapshot > Math.max(this.#compactMinBytes, COMPACT_SNAPSHOT_FACTOR * this.#snapshotBytes)) {
            // The snapshot is taken from memory now, so it holds what the batch holds: the batch goes after it.
            await this.#newGeneration(batch.records);
          } else {
            await this.#write(batch.records);
          }
          batch.resolve();
        } catch (err) {
          this.#broken = true;
          batch.reject(err as Error);
        } finally {
          this.#writing = undefined;
        }
      }
    } finally {
      this.#flushing = undefined;
    }
  }

  async #write(batch: Buffer[]): Promise<void> {
    const bytes = Buffer.concat(batch);
    await this.#handle!.write(bytes);
    await this.#handle!.datasync();
    this.#bytesSinceSnapshot += bytes.length;
    this.stats.commits++;
    this.stats.records += batch.length;
    this.stats.bytes += bytes.length;
  }

  /** Writes a snapshot of the state in memory (then `after`) to a new generation, and drops the older ones. */
  async #newGeneration(after: Buffer[] = []): Promise<void> {
    const snapshot = snapshotRecords(this.#snapshot());
    const generation = this.#generation + 1;
    const handle = await open(generationPath(this.#dir, generation), 'w', 0o600);
    try {
      const begin = frame(Kind.Begin, { format: LOG_FORMAT, generation, at: Date.now() });
      const end = frame(Kind.End, {});
      const bytes = Buffer.concat([begin, ...snapshot, end, ...after]);
      await handle.write(bytes);
      await handle.datasync();
      await syncDirectory(this.#dir);
      this.#snapshotBytes = bytes.length;
      this.#bytesSinceSnapshot = 0;
      this.stats.commits++;
      this.stats.records += snapshot.length + 2 + after.length;
      this.stats.bytes += bytes.length;
      this.stats.generations++;
    } catch (err) {
      await handle.close().catch(() => {});
      await rm(generationPath(this.#dir, generation), { force: true }).catch(() => {});
      throw err;
    }
    const old = this.#handle;
    this.#handle = handle;
    this.#generation = generation;
    this.#broken = false;
    await old?.close().catch(() => {});
    // Only now: until the new generation is complete on disk, the old one is what a restart replays.
    for (const name of await readdir(this.#dir)) {
      const match = GENERATION_PATTERN.exec(name);
      if (match !== null && Number(match[1]) < generation) await rm(join(this.#dir, name), { force: true });
    }
  }
}

/** fsync of a folder, so that a file created in it is there after a power loss. */
async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

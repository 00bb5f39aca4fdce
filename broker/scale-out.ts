/**
 * Scale-out: several broker processes share one fleet through Redis: messages cross brokers on the
 * Redis emitter (mqemitter-redis), and sessions, retained messages and Wills live in Redis
 * (aedes-persistence-redis 11.2, whose async class aedes 1.x needs; its default export is a
 * callback wrapper for older aedes).
 *
 * One incompatibility is patched here: the Redis persistence returns async generators where aedes 1.2
 * calls `.pipe()` (retained messages on SUBSCRIBE), which threw "stream.pipe is not a function" out of
 * aedes as an uncaught exception — a crash of the whole broker on the first subscription. Every stream
 * method is wrapped with Readable.from, which accepts either.
 *
 * And one default: aedes-persistence-redis hands a reconnecting session at most `maxSessionDelivery`
 * (1,000) of its queued messages; the rest waited in Redis for the next reconnect, so after a broker
 * restart ingest took 1,000 messages of its backlog and then nothing (test/broker/crash.test.ts). The
 * whole queue is delivered here: its keys are read at once (about 60 bytes each), the messages one by one.
 *
 * And Redis lost while the broker runs: the emitter's and the persistence's connection errors had no
 * listener, so the first one ("connect ECONNREFUSED") was thrown as an unhandled 'error' event and ended
 * the broker process. They are reported through `onError` (at most one line per part every 10 s) while
 * ioredis reconnects by itself.
 */
import { createRequire } from 'node:module';
import { Readable } from 'node:stream';
import { Redis } from 'ioredis';

const require = createRequire(import.meta.url);

const STREAM_METHODS = ['createRetainedStream', 'createRetainedStreamCombi', 'outgoingStream', 'streamWill', 'getClientList'];

export interface ScaleOut {
  mq: unknown;
  persistence: unknown;
  close(): Promise<void>;
}

const ERROR_REPORT_INTERVAL_MS = 10_000;

export function createScaleOut(redisUrl: string, onError: (err: Error, part: 'emitter' | 'persistence') => void = () => {}): ScaleOut {
  const mqemitterRedis = require('mqemitter-redis') as (opts: { connectionString: string }) => { close(cb: () => void): void };
  const AsyncRedisPersistence = require('aedes-persistence-redis/asyncPersistence.js') as new (opts: { conn: Redis; maxSessionDelivery: number }) => { destroy(): Promise<void> };
  const mq = mqemitterRedis({ connectionString: redisUrl });
  const connection = new Redis(redisUrl);
  const lastReported = { emitter: 0, persistence: 0 };
  const report = (part: 'emitter' | 'persistence') => (err: Error) => {
    if (Date.now() - lastReported[part] < ERROR_REPORT_INTERVAL_MS) return;
    lastReported[part] = Date.now();
    onError(err, part);
  };
  (mq as unknown as { state: { on(event: 'error', listener: (err: Error) => void): void } }).state.on('error', report('emitter'));
  connection.on('error', report('persistence'));
  const persistence = new AsyncRedisPersistence({ conn: connection, maxSessionDelivery: Number.MAX_SAFE_INTEGER }) as unknown as Record<string, unknown>;
  for (const method of STREAM_METHODS) {
    const original = persistence[method];
    if (typeof original !== 'function') continue;
    persistence[method] = (...args: unknown[]) => {
      const result = (original as (...a: unknown[]) => unknown).apply(persistence, args);
      return result instanceof Readable ? result : Readable.from(result as AsyncIterable<unknown>);
    };
  }
  return {
    mq,
    persistence,
    async close() {
      await new Promise<void>((resolve) => mq.close(() => resolve()));
      await (persistence.destroy as () => Promise<void>).call(persistence).catch(() => {});
      connection.disconnect();
    },
  };
}

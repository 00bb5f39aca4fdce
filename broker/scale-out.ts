/**
 * Scale-out: several broker processes share one fleet through Redis: messages cross brokers on the
 * Redis emitter (mqemitter-redis), and sessions, retained messages and Wills live in Redis
 * (aedes-persistence-redis 11.2, whose async class aedes 1.x needs; its default export is a
 * callback wrapper for older aedes).
 */
import { createRequire } from 'node:module';
import { Redis } from 'ioredis';

const require = createRequire(import.meta.url);

export interface ScaleOut {
  mq: unknown;
  persistence: unknown;
  close(): Promise<void>;
}

export function createScaleOut(redisUrl: string): ScaleOut {
  const mqemitterRedis = require('mqemitter-redis') as (opts: { connectionString: string }) => { close(cb: () => void): void };
  const AsyncRedisPersistence = require('aedes-persistence-redis/asyncPersistence.js') as new (opts: { conn: Redis }) => { destroy(): Promise<void> };
  const mq = mqemitterRedis({ connectionString: redisUrl });
  const connection = new Redis(redisUrl);
  const persistence = new AsyncRedisPersistence({ conn: connection });
  return {
    mq,
    persistence,
    async close() {
      await new Promise<void>((resolve) => mq.close(() => resolve()));
      await persistence.destroy().catch(() => {});
      connection.disconnect();
    },
  };
}

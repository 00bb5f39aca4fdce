/**
 * For tests whose brokers share a Redis (scale-out): with SENSORPIPE_REDIS_URL the registry lives in
 * Redis, so the test's registry file is imported there first, as `sensorpipe registry import` would
 * (replacing whatever an earlier test left, so it can run before every broker start).
 */
import { loadRegistry } from '../../core/registry.ts';
import { RedisRegistryStore } from '../../core/registry-redis.ts';

export async function importRegistryFile(registryPath: string, redisUrl: string): Promise<void> {
  const store = new RedisRegistryStore({ url: redisUrl });
  try {
    await store.importRegistry(await loadRegistry(registryPath), { replace: true });
  } finally {
    await store.close();
  }
}

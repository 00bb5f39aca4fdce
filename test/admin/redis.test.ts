/**
 * The CLI and the admin API on a registry in Redis (SENSORPIPE_REDIS_URL): both open the store with
 * `openRegistryStore({ registryPath, redisUrl })`, so a device added by one is seen by the other, with
 * no registry file in between. A real redis-server (Debian package) on a free port.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAdmin, type RunningAdmin } from '../../admin/index.ts';
import { createLogger } from '../../core/logger.ts';
import { runCli } from '../../harness/cli.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';
import { startRedis, type RedisServer } from '../broker/redis.ts';
import { TOKEN, call } from './helpers.ts';

let dir: TempDir;
let redis: RedisServer;
let admin: RunningAdmin;
let registryPath: string;

beforeAll(async () => {
  dir = await tempDir('sensorpipe-admin-redis-');
  redis = await startRedis(dir.path);
  registryPath = join(dir.path, 'registry.json');
  admin = await startAdmin({
    config: { adminToken: TOKEN, adminHost: '127.0.0.1', adminPort: 0, adminMaxBodyBytes: 65536, adminAuthFailures: 10, adminAuthBanMs: 60_000, redisUrl: redis.url },
    registryPath,
    logger: createLogger({ level: 'silent' }),
  });
}, 30_000);
afterAll(async () => {
  await admin?.close();
  await redis?.stop();
  await dir?.remove();
});

describe('devices in a Redis registry', () => {
  it('a device added by the CLI is served by the admin API, and one added by the API is seen by the CLI', async () => {
    const cli = (...args: string[]) => runCli([...args, '--registry', registryPath, '--redis-url', redis.url]);
    const added = await cli('devices', 'add', 'redis-cli-1', '--site', 'North', '--json');
    expect(added.code, added.stderr).toBe(0);
    const got = await call(admin.port, 'GET', '/admin/devices/redis-cli-1');
    expect(got.status, got.text).toBe(200);
    expect(got.json()).toMatchObject({ id: 'redis-cli-1', meta: { site: 'North' } });

    const viaApi = await call(admin.port, 'POST', '/admin/devices', { body: { id: 'redis-api-1' } });
    expect(viaApi.status, viaApi.text).toBe(201);
    const listed = await cli('devices', 'list', '--json');
    expect(JSON.parse(listed.stdout).map((d: { id: string }) => d.id)).toEqual(['redis-api-1', 'redis-cli-1']);
    const revoked = await cli('devices', 'revoke', 'redis-api-1');
    expect(revoked.code, revoked.stderr).toBe(0);
    expect((await call(admin.port, 'GET', '/admin/devices/redis-api-1')).json().status).toBe('revoked');
    // Nothing went to a file: the registry is in Redis.
    expect(existsSync(registryPath)).toBe(false);
  });
});

/**
 * The admin API as a component: opens the registry store (the file, or Redis with SENSORPIPE_REDIS_URL),
 * and serves admin/http.ts on it. Used by `sensorpipe admin` and by `sensorpipe start` (when
 * SENSORPIPE_ADMIN_TOKEN is set). It talks to the device registry only.
 */
import type { ConfigOf, adminOptions } from '../core/config.ts';
import type { Logger } from '../core/logger.ts';
import { openRegistryStore } from '../core/registry-store.ts';
import { DeviceService } from './devices.ts';
import { startAdminServer, type RunningAdmin } from './http.ts';

export { DeviceService } from './devices.ts';
export type { RunningAdmin } from './http.ts';

export type AdminConfig = ConfigOf<typeof adminOptions> & { adminToken: string; redisUrl?: string | undefined };

export async function startAdmin(options: { config: AdminConfig; registryPath: string; logger: Logger }): Promise<RunningAdmin> {
  const { config } = options;
  const store = openRegistryStore({ registryPath: options.registryPath, redisUrl: config.redisUrl, logger: options.logger.child({ component: 'admin' }) });
  let admin: RunningAdmin;
  try {
    admin = await startAdminServer({
      service: new DeviceService(store),
      token: config.adminToken,
      host: config.adminHost,
      port: config.adminPort,
      logger: options.logger,
      maxBodyBytes: config.adminMaxBodyBytes,
      authFailures: config.adminAuthFailures,
      authBanMs: config.adminAuthBanMs,
    });
  } catch (err) {
    await store.close();
    throw err;
  }
  return {
    ...admin,
    async close() {
      await admin.close();
      await store.close();
    },
  };
}

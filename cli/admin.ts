/**
 * `sensorpipe admin`: the admin HTTP API (admin/) on its own, for provisioning devices over HTTP against
 * the registry the other processes follow (the file, or Redis with SENSORPIPE_REDIS_URL).
 * `sensorpipe start` runs the same API when SENSORPIPE_ADMIN_TOKEN is set.
 */
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { startAdmin } from '../admin/index.ts';
import { configSpecs, helpText, parseConfig, registryPathOf } from '../core/config.ts';
import { SensorpipeError } from '../core/errors.ts';
import type { Command } from './command.ts';
import { explainListenError, rootLogger, untilSignal } from './run.ts';

export const adminCommand: Command = {
  summary: 'the admin HTTP API: add, list, revoke, rotate and bulk-add devices over HTTP (needs SENSORPIPE_ADMIN_TOKEN)',
  async run(argv) {
    const { config, help } = parseConfig(configSpecs.admin, { argv });
    if (help) {
      process.stdout.write(`${helpText('Usage: sensorpipe admin [options]', configSpecs.admin)}\n`);
      return 0;
    }
    const { adminToken } = config;
    if (adminToken === undefined) {
      throw new SensorpipeError('CONFIG_INVALID', 'the admin API is off without a token: set SENSORPIPE_ADMIN_TOKEN (or --admin-token), e.g. to the output of `openssl rand -base64 32`', { variable: 'SENSORPIPE_ADMIN_TOKEN', flag: 'admin-token' });
    }
    const logger = rootLogger(config.logLevel);
    const registryPath = registryPathOf(config);
    if (config.redisUrl === undefined) await mkdir(dirname(registryPath), { recursive: true, mode: 0o700 });
    const admin = await startAdmin({ config: { ...config, adminToken }, registryPath, logger }).catch((err: unknown) => {
      throw explainListenError(err, configSpecs.admin, config);
    });
    return untilSignal(() => admin.close(), logger.child({ component: 'admin' }));
  },
};

/**
 * `sensorpipe registry status|import|export`: where the device registry lives, and moving it between the
 * file and Redis (docs/REGISTRY.md). `import` puts a registry file into Redis in one atomic step, so that
 * processes started with SENSORPIPE_REDIS_URL find the devices there; `export` writes what Redis holds
 * to a file (a backup, or the way back to the file). Secrets are never printed: the registry holds none.
 */
import { access } from 'node:fs/promises';
import { resolve } from 'node:path';
import { bool, brokerOptions, commonOptions, helpText, optionalText, parseConfig, registryPathOf } from '../core/config.ts';
import { SensorpipeError } from '../core/errors.ts';
import { loadRegistry, saveRegistry } from '../core/registry.ts';
import { RedisRegistryStore } from '../core/registry-redis.ts';
import { openRegistryStore } from '../core/registry-store.ts';
import type { Command } from './command.ts';

const specs = {
  ...commonOptions,
  redisUrl: brokerOptions.redisUrl,
  from: { env: 'SENSORPIPE_REGISTRY_IMPORT_FROM', flag: 'from', schema: optionalText, doc: 'import: the registry file to put into Redis (default: the registry file, SENSORPIPE_REGISTRY or <data-dir>/registry.json).' },
  to: { env: 'SENSORPIPE_REGISTRY_EXPORT_TO', flag: 'to', schema: optionalText, doc: 'export: the file to write what Redis holds to (written atomically, mode 0600).' },
  replace: { env: 'SENSORPIPE_REGISTRY_REPLACE', flag: 'replace', schema: bool, default: 'false', switch: true, doc: 'import: overwrite the devices Redis already holds (every device not in the file is removed). export: overwrite an existing file.' },
  json: { env: 'SENSORPIPE_JSON', flag: 'json', schema: bool, default: 'false', switch: true, doc: 'Print JSON instead of text.' },
};

const USAGE = `Usage: sensorpipe registry <status|import|export> [options]

  status                 where the registry lives (the file, or Redis with SENSORPIPE_REDIS_URL) and how many devices it holds
  import [--from FILE]   put a registry file into Redis (SENSORPIPE_REDIS_URL), in one atomic step; refused when
                         Redis already holds devices, unless --replace
  export --to FILE       write the registry Redis holds to a file`;

export const registryCommand: Command = {
  summary: 'where the device registry lives; move it from its file into Redis (import) and back (export)',
  async run(argv) {
    const { config, positionals, help } = parseConfig(specs, { argv });
    const [action, ...extra] = positionals;
    if (help || action === undefined) {
      process.stdout.write(`${helpText(USAGE, specs)}\n`);
      return help ? 0 : 2;
    }
    if (extra.length > 0) throw new SensorpipeError('CONFIG_INVALID', `unexpected arguments: ${extra.join(' ')}`);
    const registryPath = registryPathOf(config);
    const print = (text: string, json: object) => process.stdout.write(`${config.json ? JSON.stringify(json) : text}\n`);
    const needRedis = (): RedisRegistryStore => {
      if (config.redisUrl === undefined) throw new SensorpipeError('CONFIG_INVALID', `registry ${action} moves the registry to or from Redis: set SENSORPIPE_REDIS_URL (or --redis-url)`);
      // No legacy file here: import and export are how a migration is done.
      return new RedisRegistryStore({ url: config.redisUrl });
    };

    switch (action) {
      case 'status': {
        const store = openRegistryStore({ registryPath, redisUrl: config.redisUrl });
        try {
          const registry = await store.load();
          const active = registry.list().filter((d) => d.status === 'active').length;
          const where = config.redisUrl === undefined ? 'file' : 'redis';
          print(`registry: ${where} ${store.location}\ndevices:  ${registry.size} (${active} active, ${registry.size - active} revoked)`, { store: where, location: store.location, devices: registry.size, active });
        } finally {
          await store.close();
        }
        return 0;
      }
      case 'import': {
        const from = resolve(config.from ?? registryPath);
        await access(from).catch(() => {
          throw new SensorpipeError('CONFIG_INVALID', `no registry file at ${from} (--from)`);
        });
        const registry = await loadRegistry(from);
        const store = needRedis();
        try {
          const result = await store.importRegistry(registry, { replace: config.replace });
          print(
            `imported ${result.devices} devices from ${from} into ${store.location} (registry version ${result.version}).\nProcesses started with SENSORPIPE_REDIS_URL now read the registry from Redis; ${from} is no longer read (keep it as a backup, or remove it).`,
            { from, location: store.location, ...result },
          );
        } finally {
          await store.close();
        }
        return 0;
      }
      case 'export': {
        if (config.to === undefined) throw new SensorpipeError('CONFIG_INVALID', 'registry export needs --to FILE');
        const to = resolve(config.to);
        const exists = await access(to).then(() => true, () => false);
        if (exists && !config.replace) throw new SensorpipeError('CONFIG_INVALID', `${to} exists; pass --replace to overwrite it`);
        const store = needRedis();
        try {
          const registry = await store.load();
          await saveRegistry(to, registry);
          print(`exported ${registry.size} devices from ${store.location} to ${to}`, { to, location: store.location, devices: registry.size });
        } finally {
          await store.close();
        }
        return 0;
      }
      default:
        throw new SensorpipeError('CONFIG_INVALID', `unknown action "${action}": status, import or export`);
    }
  },
};

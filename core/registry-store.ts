/**
 * Where the device registry lives, behind one interface: the file (the zero-set-up default) or, with
 * SENSORPIPE_REDIS_URL, Redis (shared by processes on several machines: core/registry-redis.ts). Every
 * reader and writer of the registry (broker, ingest, display, the CLI, the admin API) goes through a
 * RegistryStore, so none of them knows which one it has.
 */
import { Counter, Gauge, type Registry as MetricsRegistry } from 'prom-client';
import { isSensorpipeError } from './errors.ts';
import type { Logger } from './logger.ts';
import { RedisRegistryStore } from './registry-redis.ts';
import { watchRegistry } from './registry-watch.ts';
import { loadRegistry, updateRegistry, type Registry } from './registry.ts';

export interface RegistryWatchHandle {
  /** Loads the registry now (also done on every change) and resolves once `onChange` has run. */
  reload(): Promise<void>;
  /** False while changes cannot reach this watcher (Redis unreachable); the file is always followed. */
  connected(): boolean;
  close(): void;
}

export interface RegistryWatchOptions {
  /** How often the file is checked for changes (the file only: Redis notifies its followers). */
  intervalMs?: number;
  /** A registry that cannot be read (REGISTRY_CORRUPT), or Redis lost (REGISTRY_UNAVAILABLE); the previous registry stays in force. */
  onError?: (err: Error) => void;
}

export interface RegistryStore {
  /** Where it lives, for logs and errors (a path, or a Redis URL without its password). */
  readonly location: string;
  load(): Promise<Registry>;
  /**
   * Load, change and save as one step that no other writer can interleave with; returns what `change`
   * returned. `change` may run more than once (Redis: again on a fresh registry when another writer
   * committed first), so it must have no effect outside the registry it is given.
   */
  update<T>(change: (registry: Registry) => T): Promise<T>;
  /** Calls `onChange` with the whole registry after every change; a registry that cannot be read is reported through `onError`, and the previous one stays. */
  watch(onChange: (registry: Registry) => void, options?: RegistryWatchOptions): RegistryWatchHandle;
  close(): Promise<void>;
}

export class FileRegistryStore implements RegistryStore {
  constructor(readonly location: string) {}

  load(): Promise<Registry> {
    return loadRegistry(this.location);
  }

  update<T>(change: (registry: Registry) => T): Promise<T> {
    return updateRegistry(this.location, change);
  }

  watch(onChange: (registry: Registry) => void, options: RegistryWatchOptions = {}): RegistryWatchHandle {
    const watch = watchRegistry(this.location, onChange, options);
    return { reload: () => watch.reload(), connected: () => true, close: () => watch.close() };
  }

  async close(): Promise<void> {}
}

export interface RegistryStoreConfig {
  registryPath: string;
  redisUrl?: string | undefined;
  /** Key prefix in Redis (default `sensorpipe:registry`). */
  redisPrefix?: string;
  /** Redis only: the safety-net reload of followers (default 30 s). */
  resyncMs?: number;
  /** Redis only: how long a load or change waits for Redis (default 5 s). */
  connectTimeoutMs?: number;
  logger?: Logger;
}

/**
 * The registry a process should use: Redis when `redisUrl` is set, else the file. With Redis, the file
 * is only looked at to refuse a start on an empty Redis while it still lists devices (a migration not
 * done: `sensorpipe registry import`).
 */
export function openRegistryStore(config: RegistryStoreConfig): RegistryStore {
  if (config.redisUrl === undefined) return new FileRegistryStore(config.registryPath);
  return new RedisRegistryStore({
    url: config.redisUrl,
    legacyFile: config.registryPath,
    ...(config.redisPrefix === undefined ? {} : { prefix: config.redisPrefix }),
    ...(config.resyncMs === undefined ? {} : { resyncMs: config.resyncMs }),
    ...(config.connectTimeoutMs === undefined ? {} : { connectTimeoutMs: config.connectTimeoutMs }),
    ...(config.logger === undefined ? {} : { logger: config.logger }),
  });
}

/**
 * The registry's metrics in a process's own Prometheus registry (broker, ingest, display), measured by
 * wrapping the store: registries put in force, failed reloads by code, the age of the registry in force,
 * its size, and whether changes can reach the process (Redis connected).
 */
export function instrumentRegistryStore(store: RegistryStore, metrics: MetricsRegistry): RegistryStore {
  const registers = [metrics];
  const reloads = new Counter({ name: 'sensorpipe_registry_reloads_total', help: 'Registries loaded and put in force: at start, and after each change seen.', registers });
  const errors = new Counter({ name: 'sensorpipe_registry_errors_total', help: 'Registry loads that failed, by code (REGISTRY_CORRUPT, REGISTRY_UNAVAILABLE); the previous registry stayed in force.', labelNames: ['code'], registers });
  let loadedAt: number | undefined;
  let devices = 0;
  const handles = new Set<RegistryWatchHandle>();
  new Gauge({
    name: 'sensorpipe_registry_last_change_age_seconds',
    help: 'Seconds since the registry in force was loaded (at start, or after the last change seen).',
    registers,
    collect() {
      if (loadedAt !== undefined) this.set((Date.now() - loadedAt) / 1000);
    },
  });
  new Gauge({ name: 'sensorpipe_registry_devices', help: 'Devices in the registry in force (active and revoked).', registers, collect() { this.set(devices); } });
  new Gauge({
    name: 'sensorpipe_registry_connected',
    help: '1 while registry changes can reach this process (always for the file; Redis connected), else 0: the last registry stays in force.',
    registers,
    collect() {
      this.set([...handles].every((h) => h.connected()) ? 1 : 0);
    },
  });
  const loaded = (registry: Registry) => {
    reloads.inc();
    loadedAt = Date.now();
    devices = registry.size;
  };
  const failed = (err: Error) => errors.inc({ code: isSensorpipeError(err) ? err.code : 'INTERNAL' });
  return {
    location: store.location,
    async load() {
      try {
        const registry = await store.load();
        loaded(registry);
        return registry;
      } catch (err) {
        failed(err as Error);
        throw err;
      }
    },
    update: (change) => store.update(change),
    watch(onChange, options = {}) {
      const handle = store.watch(
        (registry) => {
          loaded(registry);
          onChange(registry);
        },
        {
          ...options,
          onError: (err) => {
            failed(err);
            options.onError?.(err);
          },
        },
      );
      handles.add(handle);
      return {
        reload: () => handle.reload(),
        connected: () => handle.connected(),
        close: () => {
          handles.delete(handle);
          handle.close();
        },
      };
    },
    close: () => store.close(),
  };
}

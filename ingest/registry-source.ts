/**
 * The registry as ingest sees it: loaded at start, reloaded on every change (a device added, rotated or
 * revoked takes effect without a restart). Where it comes from is a RegistryStore (core/registry-store.ts):
 * the file, polled, or Redis, which announces each change. A registry that fails to load keeps the last
 * good one in force and is logged; it never empties the device list. Closing the source stops only its
 * own watch: in `sensorpipe start` the broker and the display follow the same registry.
 */
import type { Logger } from '../core/logger.ts';
import { FileRegistryStore, type RegistryStore, type RegistryWatchHandle } from '../core/registry-store.ts';
import type { Registry } from '../core/registry.ts';

export class RegistrySource {
  private readonly watch: RegistryWatchHandle;

  private constructor(
    private current: Registry,
    store: RegistryStore,
    logger: Logger,
    pollMs: number,
  ) {
    this.watch = store.watch(
      (registry) => {
        this.current = registry;
        logger.info({ devices: registry.size }, 'registry reloaded');
      },
      { intervalMs: pollMs, onError: (err) => logger.error({ err: err.message, registry: store.location }, 'registry reload failed; keeping the previous one') },
    );
  }

  /**
   * Rejects when the registry cannot be loaded now: ingest does not start without one. `source` is a
   * store (closed by whoever opened it), or the path of a registry file. `pollMs`: how often a file is
   * checked (Redis needs no polling).
   */
  static async open(source: RegistryStore | string, logger: Logger, pollMs = 500): Promise<RegistrySource> {
    const store = typeof source === 'string' ? new FileRegistryStore(source) : source;
    return new RegistrySource(await store.load(), store, logger, pollMs);
  }

  get registry(): Registry {
    return this.current;
  }

  /** Loads the registry now, as a change would. */
  reload(): Promise<void> {
    return this.watch.reload();
  }

  close(): void {
    this.watch.close();
  }
}

/**
 * The registry as ingest sees it: loaded at start, reloaded when the file changes (a device added,
 * rotated or revoked takes effect without a restart). A registry that fails to load keeps the last
 * good one in force and is logged; it never empties the device list. The file is followed by
 * core/registry-watch.ts, whose close stops only this watcher: in `sensorpipe start` the broker and
 * the display follow the same file.
 */
import type { Logger } from '../core/logger.ts';
import { watchRegistry, type RegistryWatch } from '../core/registry-watch.ts';
import { loadRegistry, type Registry } from '../core/registry.ts';

export class RegistrySource {
  private readonly watch: RegistryWatch;

  private constructor(
    private current: Registry,
    path: string,
    logger: Logger,
    pollMs: number,
  ) {
    this.watch = watchRegistry(
      path,
      (registry) => {
        this.current = registry;
        logger.info({ devices: registry.size }, 'registry reloaded');
      },
      { intervalMs: pollMs, onError: (err) => logger.error({ err: err.message }, 'registry reload failed; keeping the previous one') },
    );
  }

  /** Rejects when the file cannot be loaded now: ingest does not start without a registry. */
  static async open(path: string, logger: Logger, pollMs = 500): Promise<RegistrySource> {
    return new RegistrySource(await loadRegistry(path), path, logger, pollMs);
  }

  get registry(): Registry {
    return this.current;
  }

  /** Loads the file now, as a change would. */
  reload(): Promise<void> {
    return this.watch.reload();
  }

  close(): void {
    this.watch.close();
  }
}

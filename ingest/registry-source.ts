/**
 * The registry as ingest sees it: loaded at start, reloaded when the file changes (a device added,
 * rotated or revoked takes effect without a restart). A registry that fails to load keeps the last
 * good one in force and is logged; it never empties the device list.
 */
import { unwatchFile, watchFile } from 'node:fs';
import type { Logger } from '../core/logger.ts';
import { loadRegistry, type Registry } from '../core/registry.ts';

export class RegistrySource {
  private constructor(
    private current: Registry,
    private readonly path: string,
    private readonly logger: Logger,
  ) {}

  static async open(path: string, logger: Logger, pollMs = 500): Promise<RegistrySource> {
    const source = new RegistrySource(await loadRegistry(path), path, logger);
    watchFile(path, { interval: pollMs, persistent: false }, () => void source.reload());
    return source;
  }

  get registry(): Registry {
    return this.current;
  }

  async reload(): Promise<void> {
    try {
      this.current = await loadRegistry(this.path);
      this.logger.info({ devices: this.current.size }, 'registry reloaded');
    } catch (err) {
      this.logger.error({ err: (err as Error).message }, 'registry reload failed; keeping the previous one');
    }
  }

  close(): void {
    unwatchFile(this.path);
  }
}

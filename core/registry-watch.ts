/**
 * Follows the registry file: calls `onChange` with the newly loaded registry whenever the file changes
 * (a device added, revoked or rotated by `sensorpipe devices`). Polling (fs.watchFile) rather than
 * fs.watch, because the registry is replaced by an atomic rename, which inotify-based watches lose track
 * of; a stat every second is negligible. A file that cannot be parsed keeps the previous registry and
 * is reported through `onError`.
 */
import { unwatchFile, watchFile, type Stats } from 'node:fs';
import { loadRegistry, type Registry } from './registry.ts';

export interface RegistryWatch {
  /** Loads the file now (also done on every change) and resolves once `onChange` has run. */
  reload(): Promise<void>;
  close(): void;
}

export function watchRegistry(
  path: string,
  onChange: (registry: Registry) => void,
  options: { intervalMs?: number; onError?: (err: Error) => void } = {},
): RegistryWatch {
  let closed = false;
  let running: Promise<void> = Promise.resolve();
  const reload = (): Promise<void> => {
    // Serialised so that two quick changes are applied in order.
    running = running.then(async () => {
      if (closed) return;
      try {
        const registry = await loadRegistry(path);
        if (!closed) onChange(registry);
      } catch (err) {
        options.onError?.(err as Error);
      }
    });
    return running;
  };
  const listener = (current: Stats, previous: Stats) => {
    if (current.mtimeMs !== previous.mtimeMs || current.ino !== previous.ino || current.size !== previous.size) void reload();
  };
  watchFile(path, { interval: options.intervalMs ?? 1000, persistent: false }, listener);
  return {
    reload,
    close() {
      closed = true;
      unwatchFile(path, listener);
    },
  };
}

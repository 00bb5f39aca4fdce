/**
 * Where the device registry lives, behind one interface: the file (the zero-set-up default) or, with
 * SENSORPIPE_REDIS_URL, Redis (shared by processes on several machines). Every reader and writer of the
 * registry (broker, ingest, display, the CLI, the admin API) goes through a RegistryStore, so none of
 * them knows which one it has.
 */
import { watchRegistry } from './registry-watch.ts';
import { loadRegistry, updateRegistry, type Registry } from './registry.ts';

export interface RegistryWatchHandle {
  /** Loads the registry now (also done on every change) and resolves once `onChange` has run. */
  reload(): Promise<void>;
  close(): void;
}

export interface RegistryStore {
  /** Where it lives, for logs and errors (a path, or a Redis URL without its password). */
  readonly location: string;
  load(): Promise<Registry>;
  /** Load, change and save as one step that no other writer can interleave with; returns what `change` returned. */
  update<T>(change: (registry: Registry) => T): Promise<T>;
  /** Calls `onChange` with the whole registry after every change; a registry that cannot be read is reported through `onError`, and the previous one stays. */
  watch(onChange: (registry: Registry) => void, options?: { intervalMs?: number; onError?: (err: Error) => void }): RegistryWatchHandle;
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

  watch(onChange: (registry: Registry) => void, options: { intervalMs?: number; onError?: (err: Error) => void } = {}): RegistryWatchHandle {
    return watchRegistry(this.location, onChange, options);
  }

  async close(): Promise<void> {}
}

/** The registry a process should use: Redis when `redisUrl` is set (not built yet: the file for now), else the file. */
export function openRegistryStore(config: { registryPath: string; redisUrl?: string | undefined }): RegistryStore {
  return new FileRegistryStore(config.registryPath);
}

/**
 * store — the time-series store behind one port (./port.ts). `openStore` picks the adapter from config:
 * InfluxDB (1.x API; 2.x/3.x through their 1.x-compatible API) when `influxUrl` is set, the native
 * InfluxDB 2.x API when `influxOrg` is set too, and otherwise the embedded DuckDB file under the data
 * folder — the zero-set-up default. Ingest writes through it; the display reads through it.
 */
import { join } from 'node:path';
import type { Logger } from '../core/logger.ts';
import type { TimeSeriesStore } from './port.ts';

export * from './port.ts';
export { instrumentStore } from './metrics.ts';

/** The store options of core/config.ts (storeOptions) plus the data folder. */
export interface StoreConfig {
  dataDir: string;
  influxUrl?: string | undefined;
  influxDatabase?: string | undefined;
  influxToken?: string | undefined;
  influxUsername?: string | undefined;
  influxPassword?: string | undefined;
  influxRetentionPolicy?: string | undefined;
  /** Native 2.x API (Flux): organisation and bucket. With influxOrg set, the 2.x adapter is used. */
  influxOrg?: string | undefined;
  influxBucket?: string | undefined;
}

export interface OpenStoreOptions {
  logger?: Logger;
}

/** The embedded store's file, under the data folder. */
export function embeddedStorePath(dataDir: string): string {
  return join(dataDir, 'store.duckdb');
}

/** Opens the configured store. Rejects with STORE_UNAVAILABLE when it cannot be opened or reached. */
export async function openStore(config: StoreConfig, options: OpenStoreOptions = {}): Promise<TimeSeriesStore> {
  if (config.influxUrl !== undefined && config.influxOrg !== undefined) {
    const { openInflux2Store } = await import('./influx2.ts');
    return openInflux2Store({
      url: config.influxUrl,
      org: config.influxOrg,
      bucket: config.influxBucket ?? config.influxDatabase ?? 'sensorpipe',
      token: config.influxToken,
      logger: options.logger,
    });
  }
  if (config.influxUrl !== undefined) {
    const { openInfluxStore } = await import('./influx1.ts');
    return openInfluxStore({
      url: config.influxUrl,
      database: config.influxDatabase ?? 'sensorpipe',
      token: config.influxToken,
      username: config.influxUsername,
      password: config.influxPassword,
      retentionPolicy: config.influxRetentionPolicy,
      logger: options.logger,
    });
  }
  const { openEmbeddedStore } = await import('./embedded.ts');
  return openEmbeddedStore({ path: embeddedStorePath(config.dataDir), logger: options.logger });
}

/**
 * The product's processes in this process, for end-to-end tests of what happens between them: our
 * broker, ingest (which can be stopped and started again on its data folder), the embedded store and the
 * display, on free loopback ports. Unlike ./pipeline.ts, the broker follows the registry at the
 * product's default poll (core/config.ts), ingest's log lines are kept, and ingest may be given its own
 * copy of the registry: processes on two machines, each with a registry file, see a change only once
 * it reaches their copy.
 */
import { copyFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { configSpecs, parseConfig } from '../core/config.ts';
import { createLogger } from '../core/logger.ts';
import type { RejectReason } from '../core/errors.ts';
import { Registry, saveRegistry } from '../core/registry.ts';
import { startDisplay, type RunningDisplay } from '../display/index.ts';
import { startIngest, type IngestConfig, type RunningIngest } from '../ingest/index.ts';
import { readQuarantine, type QuarantineEntry } from '../ingest/quarantine.ts';
import { openStore, type TimeSeriesStore } from '../store/index.ts';
import { startTestBroker, type TestBroker } from './broker.ts';
import { displayConfig } from './pipeline.ts';
import { provision, type TestDevice } from './publisher.ts';
import { tempDir, type TempDir } from './tmp.ts';

export interface ProductOptions {
  /** Devices dev-0 … provisioned in the registry before anything starts (default 3). */
  devices?: number;
  /** ingest reads its own copy of the registry (`ingestRegistryPath`), written at start and by `syncIngestRegistry`. */
  separateIngestRegistry?: boolean;
  /** Start the display too (default true). */
  display?: boolean;
}

export interface Product {
  dir: TempDir;
  /** The broker's and the display's registry (and ingest's, unless it has its own copy). */
  registryPath: string;
  ingestRegistryPath: string;
  dataDir: string;
  devices: TestDevice[];
  broker: TestBroker;
  store: TimeSeriesStore;
  /** The running ingest; replaced by `startIngest`. */
  ingest: RunningIngest;
  display: RunningDisplay | undefined;
  /** ingest's log lines so far (every run), parsed. */
  ingestLog: { msg: string; [field: string]: unknown }[];
  stopIngest(): Promise<void>;
  /** Starts ingest again on the same data folder and waits until it is subscribed. */
  startIngest(): Promise<void>;
  /** Copies the broker's registry over ingest's copy (atomically), as provisioning reaches ingest's machine. */
  syncIngestRegistry(): Promise<void>;
  /** What ingest has quarantined so far, oldest first, read from its files. */
  quarantined(): Promise<QuarantineEntry[]>;
  /** ingest's sensorpipe_ingest_rejected_total for a reason (this run of ingest). */
  rejected(reason: RejectReason): Promise<number>;
  /** A device's stored points of one metric (of the last day), from the store. */
  stored(device: string, metric?: string): Promise<{ ts: number; value: number }[]>;
  close(): Promise<void>;
}

export async function startProduct(options: ProductOptions = {}): Promise<Product> {
  const dir = await tempDir('sensorpipe-product-');
  const registryPath = join(dir.path, 'registry.json');
  const ingestRegistryPath = options.separateIngestRegistry ? join(dir.path, 'ingest-registry.json') : registryPath;
  const registry = new Registry();
  const devices = provision(registry, options.devices ?? 3);
  await saveRegistry(registryPath, registry);
  if (ingestRegistryPath !== registryPath) await saveRegistry(ingestRegistryPath, registry);

  const silent = createLogger({ level: 'silent' });
  const ingestLog: Product['ingestLog'] = [];
  const ingestLogger = createLogger({
    level: 'info',
    destination: new Writable({
      write(chunk: Buffer, _encoding, callback) {
        for (const line of chunk.toString().split('\n')) if (line) ingestLog.push(JSON.parse(line) as Product['ingestLog'][number]);
        callback();
      },
    }),
  });
  // The poll a deployment has unless it changes it: revocation tests hold the product to its defaults.
  const { registryPollMs } = parseConfig(configSpecs.broker, { argv: [], env: {} }).config;
  const broker = await startTestBroker({ registryPath, registryPollMs, publishRate: 1000, publishBurst: 1000 });
  const dataDir = join(dir.path, 'data');
  const config: IngestConfig = parseConfig(configSpecs.ingest, {
    env: {
      SENSORPIPE_DATA_DIR: dataDir,
      SENSORPIPE_MQTT_URL: broker.url,
      SENSORPIPE_INGEST_PASSWORD: broker.services.ingest.password,
      SENSORPIPE_INGEST_METRICS_PORT: '0',
      SENSORPIPE_RETRY_MIN: '50ms',
      SENSORPIPE_RETRY_MAX: '500ms',
    },
  }).config;
  const store = await openStore(config, { logger: silent });
  const runIngest = async (): Promise<RunningIngest> => {
    const ingest = await startIngest({ config, registryPath: ingestRegistryPath, store, logger: ingestLogger });
    await ingest.link.ready;
    return ingest;
  };
  let ingestRunning = true;
  const ingest = await runIngest();
  const display = options.display === false ? undefined : await startDisplay({ config: displayConfig(broker, dataDir), registryPath, store, logger: silent });
  await display?.feed.ready;

  const product: Product = {
    dir,
    registryPath,
    ingestRegistryPath,
    dataDir,
    devices,
    broker,
    store,
    ingest,
    display,
    ingestLog,
    async stopIngest() {
      ingestRunning = false;
      await product.ingest.close();
    },
    async startIngest() {
      product.ingest = await runIngest();
      ingestRunning = true;
    },
    async syncIngestRegistry() {
      if (ingestRegistryPath === registryPath) return;
      const temp = `${ingestRegistryPath}.sync.tmp`;
      await copyFile(registryPath, temp);
      await rename(temp, ingestRegistryPath);
    },
    async quarantined() {
      return (await readQuarantine(join(dataDir, 'ingest', 'quarantine'))).entries;
    },
    async rejected(reason) {
      return (await product.ingest.metrics.rejected.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;
    },
    async stored(device, metric = 'temperature') {
      const now = Date.now();
      const result = await store.query({ device, metrics: [metric], from: now - 86_400_000, to: now + 86_400_000, mode: 'raw', maxPoints: 10_000 });
      return result.series.find((s) => s.metric === metric)?.points.map((p) => ({ ts: p.ts, value: p.value })) ?? [];
    },
    async close() {
      await display?.close();
      if (ingestRunning) await product.ingest.close();
      await store.close();
      await broker.close();
      await dir.remove();
    },
  };
  return product;
}

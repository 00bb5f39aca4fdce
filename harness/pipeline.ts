/**
 * A whole pipeline in this process on free loopback ports: our broker, ingest, a store (the embedded one
 * in a temp folder unless one is given) and the display, all real. For display tests and end-to-end
 * tests; the devices are real MQTT.js publishers (./publisher.ts) or the simulator.
 */
import { join } from 'node:path';
import WebSocket from 'ws';
import { configSpecs, parseConfig } from '../core/config.ts';
import { LiveServerFrameSchema, type LiveClientFrame, type LiveServerFrame } from '../core/live.ts';
import { createLogger } from '../core/logger.ts';
import { Registry, saveRegistry } from '../core/registry.ts';
import { startDisplay, type DisplayConfig, type RunningDisplay } from '../display/index.ts';
import { startIngest, type RunningIngest } from '../ingest/index.ts';
import { openStore, type TimeSeriesStore } from '../store/index.ts';
import { startTestBroker, type TestBroker, type TestBrokerOptions } from './broker.ts';
import { provision, type TestDevice } from './publisher.ts';
import { tempDir, type TempDir } from './tmp.ts';

export interface TestPipeline {
  dir: TempDir;
  registryPath: string;
  devices: TestDevice[];
  broker: TestBroker;
  store: TimeSeriesStore;
  ingest: RunningIngest;
  display: RunningDisplay;
  close(): Promise<void>;
}

export interface TestPipelineOptions {
  devices?: number;
  /** Broker options over the pipeline's (publishRate and publishBurst 1000), e.g. { metricsPerDevice: false }. */
  broker?: Omit<TestBrokerOptions, 'registryPath'>;
  /**
   * Ingest options (env names as in core/config.ts) over the pipeline's, e.g. SENSORPIPE_INFLUX_URL to write
   * to a real influxd. `undefined` unsets one of the pipeline's, so that ingest's documented default applies.
   */
  ingestEnv?: Record<string, string | undefined>;
  /** Display options (env names as in core/config.ts), e.g. { SENSORPIPE_VIEWER_TOKEN: 't' }. */
  displayEnv?: Record<string, string>;
  /** Before the broker starts: add more devices, write history, … */
  prepare?(registry: Registry, dir: string): Promise<void> | void;
}

export async function startTestPipeline(options: TestPipelineOptions = {}): Promise<TestPipeline> {
  const dir = await tempDir('sensorpipe-pipeline-');
  const registryPath = join(dir.path, 'registry.json');
  const registry = new Registry();
  const devices = provision(registry, options.devices ?? 3);
  await options.prepare?.(registry, dir.path);
  await saveRegistry(registryPath, registry);
  const logger = createLogger({ level: 'silent' });
  const broker = await startTestBroker({ registryPath, publishRate: 1000, publishBurst: 1000, ...options.broker });
  const dataDir = join(dir.path, 'data');
  const { config: ingestConfig } = parseConfig(configSpecs.ingest, {
    env: {
      SENSORPIPE_DATA_DIR: dataDir,
      SENSORPIPE_MQTT_URL: broker.url,
      SENSORPIPE_INGEST_PASSWORD: broker.services.ingest.password,
      SENSORPIPE_INGEST_METRICS_PORT: '0',
      SENSORPIPE_COMPLETENESS_INTERVAL: '200ms',
      ...options.ingestEnv,
    },
  });
  const store = await openStore(ingestConfig, { logger });
  const ingest = await startIngest({ config: ingestConfig, registryPath, store, logger });
  await ingest.link.ready;
  const display = await startDisplay({ config: displayConfig(broker, dataDir, options.displayEnv), registryPath, store, logger });
  await display.feed.ready;
  return {
    dir,
    registryPath,
    devices,
    broker,
    store,
    ingest,
    display,
    close: async () => {
      await display.close();
      await ingest.close();
      await store.close();
      await broker.close();
      await dir.remove();
    },
  };
}

export function displayConfig(broker: TestBroker, dataDir: string, env: Record<string, string> = {}): DisplayConfig {
  return parseConfig(configSpecs.display, {
    env: {
      SENSORPIPE_DATA_DIR: dataDir,
      SENSORPIPE_MQTT_URL: broker.url,
      SENSORPIPE_DISPLAY_PASSWORD: broker.services.display.password,
      SENSORPIPE_HTTP_HOST: '127.0.0.1',
      SENSORPIPE_HTTP_PORT: '0',
      ...env,
    },
  }).config;
}

/** A real `ws` client of /live that parses every frame with the protocol's schema and keeps them. */
export class LiveTestClient {
  readonly frames: LiveServerFrame[] = [];
  /** Receive time (ms) of each frame, by index. */
  readonly receivedAt: number[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  private waiters: (() => void)[] = [];

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      this.frames.push(LiveServerFrameSchema.parse(JSON.parse(String(data))));
      this.receivedAt.push(Date.now());
      for (const wake of this.waiters.splice(0)) wake();
    });
    this.closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: String(reason) })));
  }

  static async connect(url: string, options: WebSocket.ClientOptions = {}): Promise<LiveTestClient> {
    return LiveTestClient.open(new WebSocket(url, options));
  }

  /** Connects offering these WebSocket subprotocols, as a browser's `new WebSocket(url, protocols)` does. */
  static async connectWithProtocols(url: string, protocols: string[], options: WebSocket.ClientOptions = {}): Promise<LiveTestClient> {
    return LiveTestClient.open(new WebSocket(url, protocols, options));
  }

  private static async open(ws: WebSocket): Promise<LiveTestClient> {
    const client = new LiveTestClient(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    });
    await client.next((f) => f.type === 'welcome');
    return client;
  }

  send(frame: LiveClientFrame | Record<string, unknown> | string): void {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  /** The first frame (from `fromIndex` on) that matches, waiting for it if needed. */
  async next<T extends LiveServerFrame>(match: (frame: LiveServerFrame) => frame is T, timeoutMs?: number, fromIndex?: number): Promise<T>;
  async next(match: (frame: LiveServerFrame) => boolean, timeoutMs?: number, fromIndex?: number): Promise<LiveServerFrame>;
  async next(match: (frame: LiveServerFrame) => boolean, timeoutMs = 10_000, fromIndex = 0): Promise<LiveServerFrame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.frames.slice(fromIndex).find(match);
      if (found !== undefined) return found;
      if (Date.now() > deadline) throw new Error(`no matching frame within ${timeoutMs} ms; got ${this.frames.map((f) => f.type).join(',')}`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
  }

  /** Every live reading received, flattened to one entry per (device, metric). */
  readings(): { device: string; seq: number; ts: number; metric: string; value: number }[] {
    return this.frames.flatMap((f) =>
      f.type === 'readings' ? f.items.flatMap(([device, seq, ts, values]) => Object.entries(values).map(([metric, value]) => ({ device, seq, ts, metric, value }))) : [],
    );
  }

  async close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return;
    this.ws.close();
    await this.closed;
  }
}

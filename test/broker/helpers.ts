/** Shared set-up for the broker tests: a registry with devices, connect helpers, message collectors. */
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { crc32 } from 'node:zlib';
import mqtt, { type IClientOptions, type MqttClient, type Packet } from 'mqtt';
import { createLogger, type Logger } from '../../core/logger.ts';
import { Registry, saveRegistry, type DeviceCredentials } from '../../core/registry.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';

export interface Fleet {
  dir: TempDir;
  registryPath: string;
  registry: Registry;
  creds: Map<string, DeviceCredentials>;
}

export async function makeFleet(ids: string[]): Promise<Fleet> {
  const dir = await tempDir('sensorpipe-broker-');
  const registry = new Registry();
  const creds = new Map<string, DeviceCredentials>();
  for (const id of ids) creds.set(id, registry.add(id));
  const registryPath = join(dir.path, 'registry.json');
  await saveRegistry(registryPath, registry);
  return { dir, registryPath, registry, creds };
}

/** Connects a device with its own credentials (client id = username = device id). */
export function deviceOptions(fleet: Fleet, id: string, extra: IClientOptions = {}): IClientOptions {
  const credentials = fleet.creds.get(id);
  if (!credentials) throw new Error(`no device ${id}`);
  return { clientId: id, username: id, password: credentials.mqttPassword, reconnectPeriod: 0, connectTimeout: 10_000, ...extra };
}

/** Connects and resolves with the client, or rejects with the CONNACK error (err.code = return code). */
export function connect(url: string, options: IClientOptions): Promise<MqttClient> {
  return mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 10_000, ...options }, false);
}

/** Resolves with the CONNACK return code of a refused connection (fails the test if it was accepted). */
export async function refusedWith(url: string, options: IClientOptions): Promise<number> {
  try {
    const client = await connect(url, options);
    await client.endAsync();
  } catch (err) {
    const code = (err as { code?: number }).code;
    if (typeof code === 'number') return code;
    throw err;
  }
  throw new Error('connection was accepted');
}

export interface Inbox {
  messages: { topic: string; payload: Buffer; retain: boolean }[];
  waitFor(predicate: (m: { topic: string; payload: Buffer; retain: boolean }) => boolean, what: string, timeoutMs?: number): Promise<{ topic: string; payload: Buffer; retain: boolean }>;
}

export function inbox(client: MqttClient): Inbox {
  const messages: Inbox['messages'] = [];
  const waiters: (() => void)[] = [];
  client.on('message', (topic, payload, packet) => {
    messages.push({ topic, payload, retain: packet.retain });
    for (const w of waiters.splice(0)) w();
  });
  return {
    messages,
    waitFor(predicate, what, timeoutMs = 20_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), timeoutMs);
        const check = () => {
          const found = messages.find(predicate);
          if (found) {
            clearTimeout(timer);
            resolve(found);
          } else waiters.push(check);
        };
        check();
      });
    },
  };
}

/** Resolves when the client is closed by the broker (or rejects after timeoutMs). */
export function closedByBroker(client: MqttClient, timeoutMs = 20_000): Promise<void> {
  return new Promise((resolve, reject) => {
    if (!client.connected) return resolve();
    const timer = setTimeout(() => reject(new Error('client was not disconnected')), timeoutMs);
    client.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** Publishes at QoS 1 and waits for the PUBACK: proves the connection works right now. */
export async function stillServes(client: MqttClient, topic: string): Promise<void> {
  await client.publishAsync(topic, 'ping', { qos: 1 });
}

/** The value of one sample line of a Prometheus text exposition (0 when absent). */
export function metricValue(text: string, name: string, labels = ''): number {
  const line = text.split('\n').find((l) => l.startsWith(labels ? `${name}{${labels}}` : `${name} `));
  return line ? Number(line.split(' ').pop()) : 0;
}

/**
 * Sends one SUBSCRIBE and resolves with the SUBACK return codes in order (MQTT.js rejects the whole
 * call when one filter is refused, so the raw SUBACK is read instead).
 */
export function subackCodes(client: MqttClient, filters: Record<string, 0 | 1 | 2>): Promise<number[]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no SUBACK')), 20_000);
    const onPacket = (packet: Packet) => {
      if (packet.cmd !== 'suback') return;
      clearTimeout(timer);
      client.off('packetreceive', onPacket);
      resolve((packet.granted as (number | { qos: number })[]).map((g) => (typeof g === 'number' ? g : g.qos)));
    };
    client.on('packetreceive', onPacket);
    client.subscribe(Object.fromEntries(Object.entries(filters).map(([topic, qos]) => [topic, { qos }])), () => {});
  });
}

export interface CapturedLogs {
  logger: Logger;
  /** Every line logged so far, parsed. */
  lines: Record<string, unknown>[];
}

/** A real pino logger (with the product's redaction) whose JSON lines are kept for the test to read. */
export function captureLogger(level: 'debug' | 'info' = 'debug'): CapturedLogs {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString().split('\n')) if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
      callback();
    },
  });
  return { logger: createLogger({ level, destination }), lines };
}

/** Rewrites the format in the BEGIN record of the log in `path` (same length, CRC recomputed). */
export async function rewriteFormat(path: string, format: number): Promise<void> {
  const [file] = (await readdir(path)).filter((f) => f.endsWith('.log'));
  const data = await readFile(join(path, file!));
  const at = data.indexOf(Buffer.from('"format":1'));
  data.write(`"format":${format}`, at);
  const length = data.readUInt32BE(0);
  data.writeUInt32BE(crc32(data.subarray(8, 8 + length)), 4);
  await writeFile(join(path, file!), data);
}

/**
 * The quick start killed with SIGKILL loses nothing it acknowledged (issue 14, item 1): `sensorpipe
 * start` (one process: broker, ingest, display, demo fleet, embedded store) is killed three times while
 * extra devices publish signed readings as fast as it takes them, and started again on its data folder
 * each time. Afterwards every reading a device had a PUBACK for is in the store with its value (read
 * through the history API, as a user would). Before the broker's session log, this lost 500–1,000
 * acknowledged readings of ~43,000 (issue 14).
 *
 * It bites: with SENSORPIPE_BROKER_WAL=off, acknowledged readings queued in the broker's memory die with
 * the process and this fails.
 */
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Registry, saveRegistry } from '../../core/registry.ts';
import { topics } from '../../core/topics.ts';
import { spawnCli, type CliProcess } from '../../harness/cli.ts';
import { freePort } from '../../harness/ports.ts';
import { provision, signedPayload, waitFor, type TestDevice } from '../../harness/publisher.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';

const EXTRA_DEVICES = 8;
/** Readings each device keeps unacknowledged at once. */
const WINDOW = 16;

let data: TempDir;
let devices: TestDevice[];
let mqttPort: number;
let httpPort: number;
let child: CliProcess | undefined;

async function start(): Promise<void> {
  child = await spawnCli(['start'], {
    SENSORPIPE_DATA_DIR: data.path,
    SENSORPIPE_MQTT_HOST: '127.0.0.1',
    SENSORPIPE_HTTP_HOST: '127.0.0.1',
    SENSORPIPE_MQTT_PORT: String(mqttPort),
    SENSORPIPE_HTTP_PORT: String(httpPort),
    SENSORPIPE_MQTT_WS_PORT: '0',
    SENSORPIPE_BROKER_METRICS_PORT: '0',
    SENSORPIPE_INGEST_METRICS_PORT: '0',
    SENSORPIPE_SIM_DEVICES: '5',
    SENSORPIPE_DEVICE_PUBLISH_RATE: '1000000',
    SENSORPIPE_DEVICE_PUBLISH_BURST: '1000000',
    SENSORPIPE_LOG_LEVEL: 'info',
  }, '"sensorpipe is running"');
}

async function kill(signal: NodeJS.Signals): Promise<void> {
  await child!.stop(signal);
  child = undefined;
}

interface Reading {
  seq: number;
  ts: number;
  value: number;
}

/** One device publishing signed readings, WINDOW at a time, until its connection dies. */
class Sender {
  readonly acked: Reading[] = [];
  #seq = 0;
  #lastTs = 0;
  constructor(readonly device: TestDevice) {}

  async run(): Promise<void> {
    let client: MqttClient;
    try {
      client = await mqtt.connectAsync(`mqtt://127.0.0.1:${mqttPort}`, { clientId: this.device.id, username: this.device.id, password: this.device.credentials.mqttPassword, reconnectPeriod: 0 });
    } catch {
      return;
    }
    client.on('error', () => {});
    await new Promise<void>((resolve) => {
      const sendOne = (): void => {
        if (!client.connected) return;
        const seq = ++this.#seq;
        const ts = (this.#lastTs = Math.max(Date.now(), this.#lastTs + 1));
        const reading = { seq, ts, value: seq / 4 };
        client.publish(topics.telemetry(this.device.id), signedPayload(this.device, [{ seq, ts, values: { temperature: reading.value } }]), { qos: 1 }, (err) => {
          if (err) return;
          this.acked.push(reading);
          sendOne();
        });
      };
      client.once('close', () => resolve());
      for (let i = 0; i < WINDOW; i++) sendOne();
    });
    client.end(true);
  }
}

/** What the history API holds for a device: value by timestamp. */
async function stored(device: string, from: number, to: number): Promise<Map<number, number>> {
  const response = await fetch(`http://127.0.0.1:${httpPort}/api/devices/${device}/readings?from=${from}&to=${to}&metrics=temperature&mode=raw&maxPoints=10000`);
  if (!response.ok) throw new Error(`history of ${device}: ${response.status} ${await response.text()}`);
  const body = (await response.json()) as { series: { metric: string; points: { ts: number; value: number }[] }[]; truncated: boolean };
  expect(body.truncated).toBe(false);
  return new Map(body.series.flatMap((s) => s.points.map((p) => [p.ts, p.value] as const)));
}

beforeAll(async () => {
  data = await tempDir('sensorpipe-start-crash-');
  const registry = new Registry();
  devices = provision(registry, EXTRA_DEVICES, 'extra');
  await saveRegistry(join(data.path, 'registry.json'), registry);
  mqttPort = await freePort();
  httpPort = await freePort();
});

afterAll(async () => {
  await child?.stop('SIGKILL');
  await data?.remove();
});

describe('sensorpipe start killed with SIGKILL', () => {
  it('loses no reading it acknowledged, and stores each with its value', { timeout: 180_000 }, async () => {
    const senders = devices.map((device) => new Sender(device));
    const acked = () => senders.reduce((n, s) => n + s.acked.length, 0);
    const from = Date.now() - 1_000;
    await start();
    for (let round = 0; round < 3; round++) {
      const runs = senders.map((s) => s.run());
      const before = acked();
      await waitFor(() => acked() >= before + 2_000, `round ${round}: readings acknowledged`, 60_000, 5);
      await kill('SIGKILL');
      await Promise.all(runs);
      await start();
    }
    const to = Date.now() + 1_000;
    expect(acked()).toBeGreaterThan(6_000);

    const missing = async (): Promise<string[]> => {
      const out: string[] = [];
      for (const sender of senders) {
        const held = await stored(sender.device.id, from, to);
        for (const reading of sender.acked) {
          const value = held.get(reading.ts);
          if (value !== reading.value) out.push(`${sender.device.id} seq ${reading.seq}: ${value === undefined ? 'not stored' : `stored ${value}, sent ${reading.value}`}`);
        }
      }
      return out;
    };
    let last: string[] = [];
    await waitFor(async () => (last = await missing()).length === 0, 'every acknowledged reading to be stored', 60_000, 500).catch((err: unknown) => {
      if (!(err as Error).message.startsWith('timed out')) throw err;
    });
    expect(last.length, `acknowledged but not stored as sent, e.g. ${last.slice(0, 5).join('; ')}`).toBe(0);
    await kill('SIGINT');
  });
});

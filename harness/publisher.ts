/**
 * Signed telemetry from real MQTT.js clients, one per device, for tests that need exact control over
 * what is sent (the simulator is the realistic load; this is the scalpel). Tracks which readings the
 * broker acknowledged.
 */
import mqtt, { type MqttClient } from 'mqtt';
import type { Registry} from '../core/registry.ts';
import { type DeviceCredentials } from '../core/registry.ts';
import type { TelemetryBody } from '../core/schemas.ts';
import { signTelemetry, type SignKey } from '../core/signature.ts';
import { topics } from '../core/topics.ts';

export interface TestDevice {
  id: string;
  credentials: DeviceCredentials;
  key: SignKey;
}

/** Adds `count` HMAC devices named prefix-0 … to a registry and returns their credentials. */
export function provision(registry: Registry, count: number, prefix = 'dev'): TestDevice[] {
  return Array.from({ length: count }, (_, i) => {
    const id = `${prefix}-${i}`;
    const credentials = registry.add(id, { meta: { site: `site ${i % 3}`, profile: 'env' } });
    const key = Buffer.from((credentials.signing as { key: string }).key, 'base64');
    return { id, credentials, key: { alg: 'hmac-sha256' as const, key } };
  });
}

export function signedPayload(device: TestDevice, readings: TelemetryBody['readings']): string {
  return JSON.stringify(signTelemetry({ v: 1, device: device.id, readings }, device.key));
}

export class DevicePublisher {
  readonly acked: { seq: number; ts: number; values: Record<string, number> }[] = [];
  private seq = 0;
  private constructor(
    readonly device: TestDevice,
    readonly client: MqttClient,
  ) {}

  static async connect(url: string, device: TestDevice, options: { password?: string } = {}): Promise<DevicePublisher> {
    const client = await mqtt.connectAsync(url, {
      clientId: device.id,
      username: device.id,
      password: options.password ?? device.credentials.mqttPassword,
      reconnectPeriod: 200,
      clean: true,
    });
    return new DevicePublisher(device, client);
  }

  private lastTs = 0;

  /** Publishes one reading at QoS 1; resolves once the broker acknowledged it. Timestamps never repeat. */
  async send(values: Record<string, number>, ts = Math.max(Date.now(), this.lastTs + 1)): Promise<void> {
    this.lastTs = ts;
    const reading = { seq: ++this.seq, ts, values };
    await this.client.publishAsync(topics.telemetry(this.device.id), signedPayload(this.device, [reading]), { qos: 1 });
    this.acked.push(reading);
  }

  /** Publishes raw bytes on the device's telemetry topic (for hostile cases). */
  async sendRaw(payload: string | Buffer): Promise<void> {
    await this.client.publishAsync(topics.telemetry(this.device.id), payload, { qos: 1 });
  }

  async close(): Promise<void> {
    await this.client.endAsync();
  }
}

export async function waitFor(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000, everyMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

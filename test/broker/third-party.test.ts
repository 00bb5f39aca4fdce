/**
 * Real third-party clients: Debian's mosquitto_pub / mosquitto_sub (MQTT 3.1.1) log in with device and
 * admin credentials, publish and subscribe, and are refused where they should be.
 */
import { execFile, spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { topics } from '../../core/topics.ts';
import { startTestBroker, type TestBroker } from '../../harness/broker.ts';
import { makeFleet, type Fleet } from './helpers.ts';
import { within } from './raw.ts';

let fleet: Fleet;
let broker: TestBroker;

interface Run { code: number | null; stdout: string; stderr: string }

function run(command: string, args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(command, args, { timeout: 30_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
    });
  });
}

const common = () => ['-h', '127.0.0.1', '-p', String(broker.broker.ports.mqtt), '-V', 'mqttv311'];

beforeAll(async () => {
  fleet = await makeFleet(['mosq-dev', 'other-dev']);
  broker = await startTestBroker({ registryPath: fleet.registryPath });
});

afterAll(async () => {
  await broker?.close();
  await fleet?.dir.remove();
});

describe('mosquitto clients', () => {
  it('a device publishes with mosquitto_pub, the admin receives it with mosquitto_sub', async () => {
    const sub = spawn('mosquitto_sub', [...common(), '-i', 'mosq-admin', '-u', 'svc:admin', '-P', broker.services.admin.password, '-t', topics.allTelemetry, '-q', '1', '-C', '1', '-v'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    sub.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => sub.once('exit', (code) => resolve(code)));
    try {
      // Publish until the subscriber (whose SUBACK we cannot observe from here) has one message.
      await within((async () => {
        while (out === '') {
          const pub = await run('mosquitto_pub', [...common(), '-i', 'mosq-dev', '-u', 'mosq-dev', '-P', fleet.creds.get('mosq-dev')!.mqttPassword, '-t', topics.telemetry('mosq-dev'), '-q', '1', '-m', 'hello from mosquitto_pub']);
          expect(pub.code).toBe(0);
          await new Promise((r) => setTimeout(r, 200));
        }
      })(), 'mosquitto_sub to print the message');
      expect(await within(exited, 'mosquitto_sub exit')).toBe(0);
      expect(out.trim()).toBe(`${topics.telemetry('mosq-dev')} hello from mosquitto_pub`);
    } finally {
      sub.kill();
    }
  });

  it('mosquitto_pub with a wrong password is refused', async () => {
    const pub = await run('mosquitto_pub', [...common(), '-i', 'mosq-dev', '-u', 'mosq-dev', '-P', 'wrong', '-t', topics.telemetry('mosq-dev'), '-m', 'x']);
    expect(pub.code).not.toBe(0);
    expect(pub.stderr.toLowerCase()).toMatch(/bad user name or password|not authori[sz]ed/);
  });

  it('mosquitto_pub with another device\'s client id is refused (identifier rejected)', async () => {
    const pub = await run('mosquitto_pub', [...common(), '-i', 'other-dev', '-u', 'mosq-dev', '-P', fleet.creds.get('mosq-dev')!.mqttPassword, '-t', topics.telemetry('mosq-dev'), '-m', 'x']);
    expect(pub.code).not.toBe(0);
    expect(pub.stderr.toLowerCase()).toContain('identifier rejected');
  });

  it('a device\'s mosquitto_sub on # is denied', async () => {
    const sub = await run('mosquitto_sub', [...common(), '-i', 'mosq-dev', '-u', 'mosq-dev', '-P', fleet.creds.get('mosq-dev')!.mqttPassword, '-t', '#', '-E']);
    expect(sub.stderr).toContain('denied');
  });
});

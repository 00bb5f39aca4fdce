/**
 * `sensorpipe sign`: prints a signed telemetry payload for a device, so a person can push a reading by
 * hand (`mosquitto_pub -m "$(sensorpipe sign …)"`) and firmware authors can compare their bytes with
 * ours. The seq comes from --seq, or counts up in a small state file per device.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { bool, commonOptions, helpText, integer, optionalText, parseConfig, text } from '../core/config.ts';
import { SensorpipeError } from '../core/errors.ts';
import { canonicalBytes } from '../core/canonical.ts';
import { MetricNameSchema, PROTOCOL_VERSION, TelemetryMessageSchema, type TelemetryBody } from '../core/schemas.ts';
import { signTelemetry, type SignKey } from '../core/signature.ts';
import type { Command } from './command.ts';

const specs = {
  dataDir: commonOptions.dataDir,
  device: { env: 'SENSORPIPE_SIGN_DEVICE', flag: 'device', schema: text, doc: 'Device id.' },
  key: { env: 'SENSORPIPE_SIGN_KEY', flag: 'key', schema: text, secret: true, doc: 'The device signing key (HMAC) or Ed25519 private key, base64, as `devices add` printed it.' },
  alg: { env: 'SENSORPIPE_SIGN_ALG', flag: 'alg', schema: z.enum(['hmac-sha256', 'ed25519']), default: 'hmac-sha256', doc: 'Signature scheme of the device.' },
  values: { env: 'SENSORPIPE_SIGN_VALUES', flag: 'values', schema: text, doc: 'Readings as name=value pairs, e.g. temperature=21.5,humidity=40.' },
  seq: { env: 'SENSORPIPE_SIGN_SEQ', flag: 'seq', schema: integer(0, Number.MAX_SAFE_INTEGER).optional(), doc: 'Sequence number (default: one more than the last one signed here for this device).' },
  ts: { env: 'SENSORPIPE_SIGN_TS', flag: 'ts', schema: integer(0, Number.MAX_SAFE_INTEGER).optional(), doc: 'Timestamp in ms (default: now).' },
  seqFile: { env: 'SENSORPIPE_SIGN_SEQ_FILE', flag: 'seq-file', schema: optionalText, doc: 'Where the last seq per device is kept (default: <data-dir>/sign-seq.json).' },
  canonical: { env: 'SENSORPIPE_SIGN_CANONICAL', flag: 'canonical', schema: bool, default: 'false', switch: true, doc: 'Also print the canonical bytes (hex) on stderr.' },
};

function parseValues(spec: string): Record<string, number> {
  const values: Record<string, number> = {};
  for (const pair of spec.split(',')) {
    const [name, raw, ...rest] = pair.split('=');
    const value = Number(raw);
    if (name === undefined || raw === undefined || rest.length > 0 || raw.trim() === '' || !Number.isFinite(value) || !MetricNameSchema.safeParse(name.trim()).success) {
      throw new SensorpipeError('CONFIG_INVALID', `--values: "${pair}" is not name=number with a valid metric name`);
    }
    values[name.trim()] = value;
  }
  return values;
}

async function nextSeq(file: string, device: string): Promise<number> {
  const state = JSON.parse(await readFile(file, 'utf8').catch(() => '{}')) as Record<string, number>;
  const seq = (state[device] ?? 0) + 1;
  state[device] = seq;
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, JSON.stringify(state), { mode: 0o600 });
  return seq;
}

export const signCommand: Command = {
  summary: 'print a signed telemetry payload (for mosquitto_pub or firmware checks)',
  async run(argv) {
    // Before parsing: --device, --key and --values are required, and `sign --help` must not demand them.
    if (argv.includes('--help')) {
      process.stdout.write(`${helpText('Usage: sensorpipe sign --device ID --key BASE64 --values name=value,… [--seq N] [--ts MS]', specs)}\n`);
      return 0;
    }
    const { config } = parseConfig(specs, { argv });
    const keyBytes = Buffer.from(config.key, 'base64');
    if (keyBytes.length !== 32) throw new SensorpipeError('CONFIG_INVALID', '--key must be 32 bytes in base64');
    const key: SignKey = config.alg === 'hmac-sha256' ? { alg: 'hmac-sha256', key: keyBytes } : { alg: 'ed25519', privateKey: keyBytes };
    const seq = config.seq ?? (await nextSeq(config.seqFile ?? join(config.dataDir, 'sign-seq.json'), config.device));
    const body: TelemetryBody = { v: PROTOCOL_VERSION, device: config.device, readings: [{ seq, ts: config.ts ?? Date.now(), values: parseValues(config.values) }] };
    const message = signTelemetry(body, key);
    const checked = TelemetryMessageSchema.safeParse(message);
    if (!checked.success) throw new SensorpipeError('CONFIG_INVALID', `the message would be rejected: ${checked.error.issues[0]?.path.join('.')}: ${checked.error.issues[0]?.message}`);
    if (config.canonical) process.stderr.write(`${canonicalBytes(body).toString('hex')}\n`);
    process.stdout.write(`${JSON.stringify(message)}\n`);
    return 0;
  },
};

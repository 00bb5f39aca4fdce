/**
 * `sensorpipe devices add|list|revoke|rotate`: manages the device registry file. New credentials are
 * printed once and never stored; the registry keeps only verifiers and verification keys.
 */
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { z } from 'zod';
import { bool, commonOptions, helpText, optionalText, parseConfig, registryPathOf } from '../core/config.ts';
import { SensorpipeError } from '../core/errors.ts';
import { loadRegistry, updateRegistry, type DeviceCredentials, type DeviceRecord } from '../core/registry.ts';
import type { Command } from './command.ts';

const specs = {
  ...commonOptions,
  alg: { env: 'SENSORPIPE_DEVICE_ALG', flag: 'alg', schema: z.enum(['hmac-sha256', 'ed25519']).optional(), doc: 'Signature scheme of the device: hmac-sha256 (default for add) or ed25519 (the server keeps only the public key).' },
  site: { env: 'SENSORPIPE_DEVICE_SITE', flag: 'site', schema: optionalText, doc: 'Metadata: where the device is.' },
  model: { env: 'SENSORPIPE_DEVICE_MODEL', flag: 'model', schema: optionalText, doc: 'Metadata: the device model.' },
  deviceProfile: { env: 'SENSORPIPE_DEVICE_PROFILE', flag: 'device-profile', schema: optionalText, doc: 'Metadata: the sensor profile (env, industrial, power, …).' },
  json: { env: 'SENSORPIPE_JSON', flag: 'json', schema: bool, default: 'false', switch: true, doc: 'Print JSON instead of text.' },
};

const USAGE = `Usage: sensorpipe devices <add|list|revoke|rotate> [id] [options]

  add <id>      register a device and print its new credentials (shown once)
  list          list devices (no secrets)
  revoke <id>   revoke a device: it is disconnected and refused from then on
  rotate <id>   issue a new MQTT password and signing key; the old ones stop working`;

function printCredentials(credentials: DeviceCredentials, json: boolean): void {
  if (json) {
    process.stdout.write(`${JSON.stringify(credentials)}\n`);
    return;
  }
  const lines = [
    `device:        ${credentials.deviceId}`,
    `mqtt username: ${credentials.deviceId}`,
    `mqtt password: ${credentials.mqttPassword}`,
    `signing alg:   ${credentials.signing.alg}`,
    credentials.signing.alg === 'hmac-sha256'
      ? `signing key:   ${credentials.signing.key}   (base64, 32 bytes)`
      : `private key:   ${credentials.signing.privateKey}   (base64 Ed25519 seed, 32 bytes)`,
    '',
    'These secrets are shown once and are not stored. Keep them on the device.',
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

function summary(record: DeviceRecord) {
  return { id: record.id, status: record.status, alg: record.signing.alg, meta: record.meta, createdAt: record.createdAt, updatedAt: record.updatedAt, revokedAt: record.revokedAt };
}

export const devicesCommand: Command = {
  summary: 'manage the device registry (add, list, revoke, rotate)',
  async run(argv) {
    const { config, positionals, help } = parseConfig(specs, { argv });
    const [action, id, ...extra] = positionals;
    if (help || action === undefined) {
      process.stdout.write(`${helpText(USAGE, specs)}\n`);
      return help ? 0 : 2;
    }
    if (extra.length > 0) throw new SensorpipeError('CONFIG_INVALID', `unexpected arguments: ${extra.join(' ')}`);
    const path = registryPathOf(config);
    const requireId = (): string => {
      if (id === undefined) throw new SensorpipeError('CONFIG_INVALID', `devices ${action} needs a device id`);
      return id;
    };

    switch (action) {
      case 'add': {
        await mkdir(dirname(path), { recursive: true });
        const meta = { site: config.site, model: config.model, profile: config.deviceProfile };
        const credentials = await updateRegistry(path, (registry) =>
          registry.add(requireId(), { alg: config.alg ?? 'hmac-sha256', meta: Object.fromEntries(Object.entries(meta).filter(([, v]) => v !== undefined)) }),
        );
        printCredentials(credentials, config.json);
        return 0;
      }
      case 'list': {
        const devices = (await loadRegistry(path)).list().map(summary);
        if (config.json) process.stdout.write(`${JSON.stringify(devices)}\n`);
        else if (devices.length === 0) process.stdout.write(`no devices in ${path}\n`);
        else for (const d of devices) process.stdout.write(`${d.id}\t${d.status}\t${d.alg}\t${JSON.stringify(d.meta)}\n`);
        return 0;
      }
      case 'revoke': {
        const record = await updateRegistry(path, (registry) => registry.revoke(requireId()));
        process.stdout.write(config.json ? `${JSON.stringify(summary(record))}\n` : `revoked ${record.id}\n`);
        return 0;
      }
      case 'rotate': {
        const credentials = await updateRegistry(path, (registry) => registry.rotate(requireId(), config.alg ? { alg: config.alg } : {}));
        printCredentials(credentials, config.json);
        return 0;
      }
      default:
        throw new SensorpipeError('CONFIG_INVALID', `unknown devices action "${action}" (add, list, revoke, rotate)`);
    }
  },
};

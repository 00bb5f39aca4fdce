/**
 * `sensorpipe devices add|list|get|update|revoke|rotate|bulk`: manages the device registry through the
 * same implementation as the admin HTTP API (admin/devices.ts), on the registry file or, with
 * SENSORPIPE_REDIS_URL, Redis. New credentials are printed once and never stored; the registry keeps
 * only verifiers and verification keys.
 */
import { mkdir, open, readFile, rm, type FileHandle } from 'node:fs/promises';
import { dirname, extname } from 'node:path';
import { z } from 'zod';
import { credentialsCsv } from '../admin/csv.ts';
import { CREDENTIAL_FORMATS, formatCredentials, type CredentialFormat } from '../admin/credentials.ts';
import { DeviceService } from '../admin/devices.ts';
import { bulkInput } from '../admin/input.ts';
import { bool, brokerOptions, commonOptions, helpText, optionalText, parseConfig, registryPathOf } from '../core/config.ts';
import { SensorpipeError } from '../core/errors.ts';
import { PAYLOAD_FORMATS } from '../core/mappings.ts';
import { TRUST_LEVELS } from '../core/registry.ts';
import { openRegistryStore } from '../core/registry-store.ts';
import type { DeviceSummary } from '../admin/schemas.ts';
import type { Command } from './command.ts';

/** A bulk file read by the CLI may be larger than an admin API body: it is the operator's own file. */
const BULK_FILE_MAX_BYTES = 64 * 1024 * 1024;

const specs = {
  ...commonOptions,
  redisUrl: brokerOptions.redisUrl,
  alg: { env: 'SENSORPIPE_DEVICE_ALG', flag: 'alg', schema: z.enum(['hmac-sha256', 'ed25519']).optional(), doc: 'Signature scheme of the device: hmac-sha256 (default for add) or ed25519 (the server keeps only the public key).' },
  site: { env: 'SENSORPIPE_DEVICE_SITE', flag: 'site', schema: optionalText, doc: 'Metadata: where the device is.' },
  model: { env: 'SENSORPIPE_DEVICE_MODEL', flag: 'model', schema: optionalText, doc: 'Metadata: the device model.' },
  deviceProfile: { env: 'SENSORPIPE_DEVICE_PROFILE', flag: 'device-profile', schema: optionalText, doc: 'Metadata: the sensor profile (env, industrial, power, …).' },
  deviceAlerts: { env: 'SENSORPIPE_DEVICE_ALERTS', flag: 'alerts', schema: optionalText, doc: 'Metadata: the device\'s own alert rules, clauses separated by ";" (README "Alerts"), e.g. "temperature > 35 clear 33 for 30s; silent 2m".' },
  unset: { env: 'SENSORPIPE_DEVICE_UNSET', flag: 'unset', schema: optionalText, doc: 'update: metadata fields to remove, comma-separated (site, model, profile, alerts).' },
  format: {
    env: 'SENSORPIPE_DEVICE_FORMAT',
    flag: 'format',
    schema: z.enum([...CREDENTIAL_FORMATS, 'csv']).optional(),
    doc: 'How add and rotate print the credentials: text (default), env (KEY=value lines for `source`, systemd, docker and the Python SDK example), json, or c-header (for the C SDK). bulk: json (default) or csv.',
  },
  json: { env: 'SENSORPIPE_JSON', flag: 'json', schema: bool, default: 'false', switch: true, doc: 'Print JSON instead of text (the same as --format json).' },
  trust: { env: 'SENSORPIPE_DEVICE_TRUST', flag: 'trust', schema: z.enum(TRUST_LEVELS).optional(), doc: 'add: signed (default: the device signs every message) or broker-authenticated (a device that cannot sign, e.g. Tasmota or Shelly: only its MQTT login vouches for its readings, stored with trust broker; needs --payload). core/PROTOCOL.md §7.' },
  payload: { env: 'SENSORPIPE_DEVICE_PAYLOAD', flag: 'payload', schema: z.enum(PAYLOAD_FORMATS).optional(), doc: 'add, broker-authenticated: what the device sends: flat-json ({"temperature":21.5} on sensors/<id>/telemetry), tasmota (tele/<id>/SENSOR), shelly-gen2 (<id>/events/rpc) or pointers (see --pointers).' },
  pointers: { env: 'SENSORPIPE_DEVICE_POINTERS', flag: 'pointers', schema: optionalText, doc: 'add --payload pointers: metric name → JSON pointer into the payload, as JSON: \'{"temperature":"/AM2301/Temperature","power":{"pointer":"/ENERGY/Power","unit":"W"}}\'.' },
  pointersTs: { env: 'SENSORPIPE_DEVICE_POINTERS_TS', flag: 'pointers-ts', schema: optionalText, doc: 'add --payload pointers: where the reading\'s time is, as JSON: \'{"pointer":"/time","format":"s"}\' (format ms, s or iso8601); without it, ingest\'s clock.' },
  out: { env: 'SENSORPIPE_DEVICE_OUT', flag: 'out', schema: optionalText, doc: 'Write the credentials to this new file (mode 0600; an existing file is never overwritten) instead of stdout.' },
};

const USAGE = `Usage: sensorpipe devices <action> [id | file] [options]

  add <id>       register a device and print its new credentials (shown once)
  list           list devices (no secrets)
  get <id>       show one device (no secrets)
  update <id>    change its metadata: --site, --model, --device-profile, --alerts; --unset site,model,profile,alerts
  revoke <id>    revoke a device: it is disconnected and refused from then on
  rotate <id>    issue a new MQTT password and signing key; the old ones stop working
  bulk <file>    add every device of a CSV file (header: id,alg,trust,payload,site,model,profile) or a JSON file
                 ({"devices": [{"id": …}, …]}), all or none; prints a file of credentials (shown once)

The admin HTTP API (sensorpipe admin) does the same, with the same checks and error codes.`;

/** A JSON flag's value, or CONFIG_INVALID naming the flag. */
function jsonFlag(flag: string, text: string | undefined): unknown {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new SensorpipeError('CONFIG_INVALID', `--${flag} is not JSON: ${(err as Error).message}`);
  }
}

function deviceLine(d: DeviceSummary): string {
  return `${d.id}\t${d.status}\t${d.alg}\t${JSON.stringify(d.meta)}`;
}

export const devicesCommand: Command = {
  summary: 'manage the device registry (add, list, get, update, revoke, rotate, bulk)',
  async run(argv) {
    const { config, positionals, help } = parseConfig(specs, { argv });
    const [action, id, ...extra] = positionals;
    if (help || action === undefined) {
      process.stdout.write(`${helpText(USAGE, specs)}\n`);
      return help ? 0 : 2;
    }
    if (extra.length > 0) throw new SensorpipeError('CONFIG_INVALID', `unexpected arguments: ${extra.join(' ')}`);
    if (config.json && config.format !== undefined && config.format !== 'json') {
      throw new SensorpipeError('CONFIG_INVALID', `--json and --format ${config.format} ask for two formats: give one`);
    }
    const format = config.json ? 'json' : config.format;
    const path = registryPathOf(config);
    const requireId = (): string => {
      if (id === undefined) throw new SensorpipeError('CONFIG_INVALID', `devices ${action} needs a device id`);
      return id;
    };
    const credentialFormat = (): CredentialFormat => {
      if (format === 'csv') throw new SensorpipeError('CONFIG_INVALID', `--format csv is for devices bulk; devices ${action} prints ${CREDENTIAL_FORMATS.join(', ')}`);
      return format ?? 'text';
    };
    /**
     * Secrets go to stdout, or to a new file of mode 0600 (never over an existing one), created before
     * the registry changes: credentials that could not be written anywhere would be lost for good.
     */
    let outFile: FileHandle | undefined;
    const secretActions = ['add', 'rotate', 'bulk'];
    if (config.out !== undefined && secretActions.includes(action)) {
      outFile = await open(config.out, 'wx', 0o600).catch((err: NodeJS.ErrnoException) => {
        throw new SensorpipeError('CONFIG_INVALID', err.code === 'EEXIST' ? `--out ${config.out} exists; it is never overwritten (it may hold other secrets)` : `--out ${config.out}: ${err.message}`);
      });
    }
    let emitted = false;
    const emitSecrets = async (text: string): Promise<void> => {
      emitted = true;
      if (outFile === undefined) {
        process.stdout.write(text);
        return;
      }
      await outFile.writeFile(text, 'utf8');
      await outFile.sync();
      process.stderr.write(`credentials written to ${config.out} (mode 0600); they are shown once\n`);
    };
    const printDevice = (device: DeviceSummary, text: string) => process.stdout.write(format === 'json' ? `${JSON.stringify(device)}\n` : `${text}\n`);

    const store = openRegistryStore({ registryPath: path, redisUrl: config.redisUrl });
    const service = new DeviceService(store);
    try {
      switch (action) {
        case 'add': {
          const format = credentialFormat(); // a bad --format is refused before anything is written
          if (config.redisUrl === undefined) await mkdir(dirname(path), { recursive: true });
          if (config.payload !== 'pointers' && (config.pointers !== undefined || config.pointersTs !== undefined)) throw new SensorpipeError('CONFIG_INVALID', '--pointers and --pointers-ts go with --payload pointers');
          // Trust and payload mapping (core/PROTOCOL.md §7) are checked by the service, as over HTTP.
          const payload = config.payload === 'pointers'
            ? { format: config.payload, metrics: jsonFlag('pointers', config.pointers), ...(config.pointersTs === undefined ? {} : { ts: jsonFlag('pointers-ts', config.pointersTs) }) }
            : config.payload === undefined ? undefined : { format: config.payload };
          const { credentials } = await service.add({
            id: requireId(),
            ...(config.alg === undefined ? {} : { alg: config.alg }),
            ...(config.trust === undefined ? {} : { trust: config.trust }),
            ...(payload === undefined ? {} : { payload }),
            ...(config.site === undefined ? {} : { site: config.site }),
            ...(config.model === undefined ? {} : { model: config.model }),
            ...(config.deviceProfile === undefined ? {} : { profile: config.deviceProfile }),
            ...(config.deviceAlerts === undefined ? {} : { alerts: config.deviceAlerts }),
          });
          await emitSecrets(formatCredentials(credentials, format));
          return 0;
        }
        case 'list': {
          const devices = await service.list();
          if (format === 'json') process.stdout.write(`${JSON.stringify(devices)}\n`);
          else if (devices.length === 0) process.stdout.write(`no devices in ${service.location}\n`);
          else for (const d of devices) process.stdout.write(`${deviceLine(d)}\n`);
          return 0;
        }
        case 'get': {
          const device = await service.get(requireId());
          printDevice(device, deviceLine(device));
          return 0;
        }
        case 'update': {
          const change: Record<string, string | null> = {};
          if (config.site !== undefined) change.site = config.site;
          if (config.model !== undefined) change.model = config.model;
          if (config.deviceProfile !== undefined) change.profile = config.deviceProfile;
          if (config.deviceAlerts !== undefined) change.alerts = config.deviceAlerts;
          for (const field of (config.unset ?? '').split(',').map((f) => f.trim()).filter((f) => f !== '')) {
            if (field in change) throw new SensorpipeError('CONFIG_INVALID', `--unset ${field} and a value for ${field}: give one`);
            change[field] = null; // an unknown field name is refused by the service's schema, as over HTTP
          }
          const device = await service.update(requireId(), change);
          printDevice(device, `updated ${device.id}: ${JSON.stringify(device.meta)}`);
          return 0;
        }
        case 'revoke': {
          const device = await service.revoke(requireId());
          printDevice(device, `revoked ${device.id}`);
          return 0;
        }
        case 'rotate': {
          const format = credentialFormat();
          const { credentials } = await service.rotate(requireId(), config.alg === undefined ? {} : { alg: config.alg });
          await emitSecrets(formatCredentials(credentials, format));
          return 0;
        }
        case 'bulk': {
          if (format !== undefined && format !== 'json' && format !== 'csv') throw new SensorpipeError('CONFIG_INVALID', `devices bulk prints json or csv, not ${format}`);
          if (id === undefined) throw new SensorpipeError('CONFIG_INVALID', 'devices bulk needs a file: a .csv (header id,alg,trust,payload,site,model,profile) or a .json ({"devices": […]})');
          const bytes = await readFile(id).catch((err: Error) => {
            throw new SensorpipeError('CONFIG_INVALID', `cannot read ${id}: ${err.message}`);
          });
          const type = extname(id).toLowerCase() === '.csv' ? 'csv' : extname(id).toLowerCase() === '.json' ? 'json' : /^\s*[{[]/.test(bytes.subarray(0, 64).toString('latin1')) ? 'json' : 'csv';
          if (config.redisUrl === undefined) await mkdir(dirname(path), { recursive: true });
          const all = await service.bulkAdd(bulkInput(bytes, type, BULK_FILE_MAX_BYTES));
          await emitSecrets(format === 'csv' ? credentialsCsv(all) : `${JSON.stringify({ devices: all }, null, 2)}\n`);
          return 0;
        }
        default:
          throw new SensorpipeError('CONFIG_INVALID', `unknown devices action "${action}" (add, list, get, update, revoke, rotate, bulk)`);
      }
    } finally {
      await store.close();
      if (outFile !== undefined) {
        await outFile.close();
        if (!emitted && config.out !== undefined) await rm(config.out, { force: true });
      }
    }
  },
};

/**
 * Device management: the one implementation behind `sensorpipe devices` (cli/devices.ts) and the admin
 * HTTP API (admin/http.ts). Add, list, get, revoke, rotate, update metadata and bulk add, each validated
 * here with the schemas of admin/schemas.ts, so both interfaces accept the same input and refuse it with
 * the same codes: DEVICE_INVALID (400), DEVICE_UNKNOWN (404), REGISTRY_CONFLICT (409).
 *
 * Every read and write goes through a RegistryStore (core/registry-store.ts): the registry file, or Redis
 * when SENSORPIPE_REDIS_URL is set; this module does not know which. Secrets (MQTT password, signing key)
 * are returned to the caller once and never kept or logged here.
 */
import type { z } from 'zod';
import { SensorpipeError, isSensorpipeError } from '../core/errors.ts';
import { trustOf, type DeviceRecord, type IssuedCredentials, type Registry } from '../core/registry.ts';
import type { RegistryStore } from '../core/registry-store.ts';
import type { DeviceMeta } from '../core/schemas.ts';
import { DeviceIdSchema } from '../core/schemas.ts';
import {
  AddDeviceSchema,
  BULK_MAX_DEVICES,
  RotateDeviceSchema,
  UpdateDeviceSchema,
  type AddDevice,
  type DeviceSummary,
} from './schemas.ts';

/** The first few problems of a failed parse, as `field: message`, for one error message. */
function describeIssues(error: z.ZodError, prefix = ''): string {
  return error.issues
    .slice(0, 3)
    .map((issue) => `${prefix}${issue.path.join('.') || '(body)'}: ${issue.message}`)
    .join('; ');
}

/** Parses input with a schema of admin/schemas.ts, or throws DEVICE_INVALID naming what is wrong. */
export function validate<T>(schema: z.ZodType<T>, input: unknown, what: string): T {
  const parsed = schema.safeParse(input);
  if (!parsed.success) throw new SensorpipeError('DEVICE_INVALID', `invalid ${what}: ${describeIssues(parsed.error)}`);
  return parsed.data;
}

/** A device id from a path or a command line: DEVICE_INVALID when it cannot be one. */
export function validateDeviceId(id: unknown): string {
  const parsed = DeviceIdSchema.safeParse(id);
  if (!parsed.success) throw new SensorpipeError('DEVICE_INVALID', `invalid device id ${JSON.stringify(id).slice(0, 80)}: ${parsed.error.issues[0]?.message}`);
  return parsed.data;
}

export function summarize(record: DeviceRecord): DeviceSummary {
  return {
    id: record.id,
    status: record.status,
    alg: record.signing.alg,
    trust: trustOf(record),
    ...(record.signing.alg === 'ed25519' ? { publicKey: record.signing.publicKey } : {}),
    meta: record.meta,
    createdAt: record.createdAt,
    updatedAt: record.updatedAt,
    ...(record.revokedAt === undefined ? {} : { revokedAt: record.revokedAt }),
  };
}

function metaOf(device: AddDevice): DeviceMeta {
  const meta: DeviceMeta = {};
  if (device.site !== undefined) meta.site = device.site;
  if (device.model !== undefined) meta.model = device.model;
  if (device.profile !== undefined) meta.profile = device.profile;
  if (device.alerts !== undefined) meta.alerts = device.alerts;
  return meta;
}

/** Options for Registry.add from a validated device: only what was given (a broker-authenticated device takes no alg). */
function addOptions(device: AddDevice) {
  return {
    ...(device.alg === undefined ? {} : { alg: device.alg }),
    ...(device.trust === undefined ? {} : { trust: device.trust }),
    ...(device.payload === undefined ? {} : { payload: device.payload }),
    meta: metaOf(device),
  };
}

/**
 * Runs a registry change, with the registry's own refusals of an input (CONFIG_INVALID: a mapping that
 * does not go with the trust level, an alg for a device without a key) reported as what they are here,
 * a device the caller described wrongly: DEVICE_INVALID (400), never a 5xx.
 */
function asDeviceInput<T>(change: () => T): T {
  try {
    return change();
  } catch (err) {
    if (isSensorpipeError(err, 'CONFIG_INVALID')) throw new SensorpipeError('DEVICE_INVALID', err.message, err.details);
    throw err;
  }
}

function requireDevice(registry: Registry, id: string): DeviceRecord {
  const record = registry.get(id);
  if (record === undefined) throw new SensorpipeError('DEVICE_UNKNOWN', `no device ${id} in the registry`);
  return record;
}

/** What a bulk add takes: device objects (JSON), or rows already read from a CSV file (admin/csv.ts). */
export type BulkInput = { devices: unknown[]; rowLabel?: (index: number) => string };

export class DeviceService {
  constructor(private readonly store: RegistryStore) {}

  get location(): string {
    return this.store.location;
  }

  async add(input: unknown): Promise<{ device: DeviceSummary; credentials: IssuedCredentials }> {
    const device = validate(AddDeviceSchema, input, 'device');
    return this.store.update((registry) => {
      if (registry.get(device.id) !== undefined) throw new SensorpipeError('REGISTRY_CONFLICT', `device ${device.id} already exists`);
      const credentials = asDeviceInput(() => registry.add(device.id, addOptions(device)));
      return { device: summarize(requireDevice(registry, device.id)), credentials };
    });
  }

  async list(): Promise<DeviceSummary[]> {
    return (await this.store.load()).list().map(summarize);
  }

  async get(id: string): Promise<DeviceSummary> {
    const deviceId = validateDeviceId(id);
    return summarize(requireDevice(await this.store.load(), deviceId));
  }

  async revoke(id: string): Promise<DeviceSummary> {
    const deviceId = validateDeviceId(id);
    return this.store.update((registry) => {
      requireDevice(registry, deviceId);
      return summarize(registry.revoke(deviceId));
    });
  }

  /**
   * New MQTT password and signing key (a broker-authenticated device: a new MQTT password, it has no
   * key); the old ones stop working once the registry is saved.
   */
  async rotate(id: string, input: unknown = {}): Promise<{ device: DeviceSummary; credentials: IssuedCredentials }> {
    const deviceId = validateDeviceId(id);
    const options = validate(RotateDeviceSchema, input, 'rotation');
    return this.store.update((registry) => {
      const record = requireDevice(registry, deviceId);
      if (trustOf(record) === 'broker-authenticated') {
        if (options.alg !== undefined) throw new SensorpipeError('DEVICE_INVALID', `device ${deviceId} is broker-authenticated: it has no signing key, so no alg`);
        return { device: summarize(record), credentials: registry.rotatePassword(deviceId) };
      }
      const credentials = asDeviceInput(() => registry.rotate(deviceId, options.alg === undefined ? {} : { alg: options.alg }));
      return { device: summarize(requireDevice(registry, deviceId)), credentials };
    });
  }

  /** Sets (a string) or removes (null) site, model, profile and alerts; fields not given stay as they are. */
  async update(id: string, input: unknown): Promise<DeviceSummary> {
    const deviceId = validateDeviceId(id);
    const change = validate(UpdateDeviceSchema, input, 'metadata change');
    return this.store.update((registry) => {
      const record = requireDevice(registry, deviceId);
      const meta: DeviceMeta = { ...record.meta };
      for (const field of ['site', 'model', 'profile', 'alerts'] as const) {
        const value = change[field];
        if (value === null) delete meta[field];
        else if (value !== undefined) meta[field] = value;
      }
      // core/registry.ts has no metadata setter, so the record the registry holds is changed in place:
      // the file store saves the registry's records as they are, and the Redis store compares each record
      // with a copy serialised before the change ran. (A `Registry.updateMeta` would be a cleaner home.)
      record.meta = meta;
      record.updatedAt = new Date().toISOString();
      return summarize(record);
    });
  }

  /**
   * Adds every device, or none: every row is validated, and checked against the others and against the
   * registry, before the first one is added; then all are added in one registry write. A problem anywhere
   * is DEVICE_INVALID (or REGISTRY_CONFLICT for ids already registered), naming the rows, and nothing
   * is written.
   */
  async bulkAdd(input: BulkInput): Promise<IssuedCredentials[]> {
    const label = input.rowLabel ?? ((index: number) => `devices[${index}]`);
    if (input.devices.length === 0) throw new SensorpipeError('DEVICE_INVALID', 'the bulk file lists no device');
    if (input.devices.length > BULK_MAX_DEVICES) throw new SensorpipeError('DEVICE_INVALID', `the bulk file lists ${input.devices.length} devices; at most ${BULK_MAX_DEVICES} at once`);
    const problems: string[] = [];
    const devices: AddDevice[] = [];
    const firstRow = new Map<string, number>();
    input.devices.forEach((row, index) => {
      const parsed = AddDeviceSchema.safeParse(row);
      if (!parsed.success) {
        problems.push(describeIssues(parsed.error, `${label(index)}.`));
        return;
      }
      const seen = firstRow.get(parsed.data.id);
      if (seen !== undefined) problems.push(`${label(index)}: device ${parsed.data.id} is listed twice (also ${label(seen)})`);
      else firstRow.set(parsed.data.id, index);
      devices.push(parsed.data);
    });
    if (problems.length > 0) {
      throw new SensorpipeError('DEVICE_INVALID', `nothing was added: ${problems.length} invalid row(s): ${problems.slice(0, 5).join('; ')}${problems.length > 5 ? '; …' : ''}`, { problems: problems.slice(0, 100) });
    }
    return this.store.update((registry) => {
      const existing = devices.filter((device) => registry.get(device.id) !== undefined).map((device) => device.id);
      if (existing.length > 0) {
        throw new SensorpipeError('REGISTRY_CONFLICT', `nothing was added: ${existing.length} device(s) already exist: ${existing.slice(0, 10).join(', ')}${existing.length > 10 ? ', …' : ''}`, { existing: existing.slice(0, 100) });
      }
      // Registry.add checks what the schema cannot (a mapping that does not go with its trust level). A
      // refusal throws out of this change, and a change that throws saves nothing (RegistryStore.update).
      return devices.map((device, index) =>
        asDeviceInput(() => {
          try {
            return registry.add(device.id, addOptions(device));
          } catch (err) {
            if (isSensorpipeError(err)) throw new SensorpipeError(err.code, `nothing was added: ${label(index)}: ${err.message}`, err.details);
            throw err;
          }
        }),
      );
    });
  }
}

/**
 * The device registry: one JSON file, the list of devices that may connect and whose readings count.
 *
 * Per device: id, status (active/revoked), the MQTT credential *verifier* (never the secret), the key
 * that verifies its signatures (an HMAC key, or only an Ed25519 public key), and metadata.
 *
 * Trust level (core/PROTOCOL.md §7): a device is `signed` (the default, and every record written before
 * the field existed) or `broker-authenticated`: its own MQTT credentials, client id and topic ACL, but
 * no signing key (`signing: {alg: "none"}`) and unsigned payloads, read with its payload mapping
 * (core/mappings.ts). The field is written only for broker-authenticated devices, so files keep loading
 * both ways.
 * The file is written atomically (temp file, fsync, rename, fsync of the folder) with mode 0600, and
 * a file that cannot be parsed is reported as REGISTRY_CORRUPT and never replaced by an empty one.
 *
 * Why a fast keyed hash and not scrypt for the MQTT verifier: device secrets are 32 random bytes that we
 * generate, so there is nothing to brute-force, and the broker must check 10,000 logins quickly after a
 * restart. HMAC-SHA256(salt, secret) keeps a stolen file from yielding usable credentials.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { z } from 'zod';
import { SensorpipeError } from './errors.ts';
import { PayloadMappingSchema, type PayloadMapping } from './mappings.ts';
import { DeviceIdSchema, DeviceMetaSchema } from './schemas.ts';
import { RESERVED_TOPIC_ROOTS } from './topics.ts';
import {
  ed25519PublicKeyFromSeed,
  generateEd25519KeyPair,
  generateHmacKey,
  type SignatureAlgorithm,
  type VerifyKey,
} from './signature.ts';

const Base64 = z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/);

export const TRUST_LEVELS = ['signed', 'broker-authenticated'] as const;
export type TrustLevel = (typeof TRUST_LEVELS)[number];

/** Why a payload mapping cannot go with a device, or undefined when it can. */
function mappingProblem(id: string, trust: TrustLevel, payload: PayloadMapping | undefined): string | undefined {
  if (payload === undefined) return trust === 'broker-authenticated' ? 'a broker-authenticated device needs a payload mapping (flat-json, tasmota, shelly-gen2 or pointers)' : undefined;
  if (trust !== 'broker-authenticated') return 'a payload mapping is for broker-authenticated devices only: a signed device sends signed telemetry';
  if (payload.format === 'shelly-gen2' && RESERVED_TOPIC_ROOTS.has(id)) return `a shelly-gen2 device publishes under "${id}/", a topic root sensorpipe or Tasmota uses: choose another id`;
  return undefined;
}

const DeviceRecordSchema = z
  .strictObject({
    id: DeviceIdSchema,
    status: z.enum(['active', 'revoked']),
    createdAt: z.iso.datetime(),
    updatedAt: z.iso.datetime(),
    revokedAt: z.iso.datetime().optional(),
    /** Absent: `signed` (records written before trust levels existed are signed). */
    trust: z.literal('broker-authenticated').optional(),
    mqtt: z.strictObject({ scheme: z.literal('hmac-sha256'), salt: Base64, hash: Base64 }),
    signing: z.discriminatedUnion('alg', [
      z.strictObject({ alg: z.literal('hmac-sha256'), key: Base64 }),
      z.strictObject({ alg: z.literal('ed25519'), publicKey: Base64 }),
      /** A broker-authenticated device: no key, and nothing it sends is checked as signed. */
      z.strictObject({ alg: z.literal('none') }),
    ]),
    /** How ingest reads what a broker-authenticated device sends (core/mappings.ts). */
    payload: PayloadMappingSchema.optional(),
    meta: DeviceMetaSchema,
  })
  .check((ctx) => {
    const record = ctx.value;
    const trust = record.trust ?? 'signed';
    if ((trust === 'broker-authenticated') !== (record.signing.alg === 'none')) {
      ctx.issues.push({ code: 'custom', message: 'signing alg "none" goes with trust "broker-authenticated", and only with it', input: record, path: ['signing'] });
    }
    const problem = mappingProblem(record.id, trust, record.payload);
    if (problem !== undefined) ctx.issues.push({ code: 'custom', message: problem, input: record, path: ['payload'] });
  });
export type DeviceRecord = z.infer<typeof DeviceRecordSchema>;

/** A device's trust level: `signed` unless its record says otherwise. */
export function trustOf(record: DeviceRecord): TrustLevel {
  return record.trust ?? 'signed';
}

/** What `Registry.add` takes besides the id; checked with zod (hostile input: CLI flags, the admin API). */
export const AddDeviceOptionsSchema = z.strictObject({
  alg: z.enum(['hmac-sha256', 'ed25519']).optional(),
  trust: z.enum(TRUST_LEVELS).optional(),
  payload: PayloadMappingSchema.optional(),
  meta: DeviceMetaSchema.optional(),
  now: z.date().optional(),
});
export type AddDeviceOptions = z.input<typeof AddDeviceOptionsSchema>;

const RegistryFileSchema = z.strictObject({
  format: z.literal('sensorpipe-registry'),
  version: z.literal(1),
  devices: z.array(DeviceRecordSchema),
});

/** Credentials handed out once, when a device is added or rotated. Never stored. */
export interface DeviceCredentials {
  deviceId: string;
  mqttPassword: string;
  signing: { alg: 'hmac-sha256'; key: string } | { alg: 'ed25519'; privateKey: string; publicKey: string };
}

/** Credentials of a broker-authenticated device: an MQTT password, and no signing key (it has none). */
export interface BrokerDeviceCredentials {
  deviceId: string;
  mqttPassword: string;
  trust: 'broker-authenticated';
}

export type IssuedCredentials = DeviceCredentials | BrokerDeviceCredentials;

export class Registry {
  private readonly devices = new Map<string, DeviceRecord>();

  constructor(records: Iterable<DeviceRecord> = []) {
    for (const record of records) this.devices.set(record.id, record);
  }

  get(id: string): DeviceRecord | undefined {
    return this.devices.get(id);
  }

  list(): DeviceRecord[] {
    return [...this.devices.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
  }

  get size(): number {
    return this.devices.size;
  }

  /**
   * Registers a device and returns its credentials (shown once). A `broker-authenticated` device needs
   * a `payload` mapping and gets no signing key; `alg` is for signed devices only.
   */
  add(id: string, options: AddDeviceOptions & { trust: 'broker-authenticated' }): BrokerDeviceCredentials;
  add(id: string, options?: AddDeviceOptions & { trust?: 'signed' }): DeviceCredentials;
  add(id: string, options?: AddDeviceOptions): IssuedCredentials;
  add(id: string, input: AddDeviceOptions = {}): IssuedCredentials {
    const parsedId = DeviceIdSchema.safeParse(id);
    if (!parsedId.success) throw new SensorpipeError('CONFIG_INVALID', `invalid device id ${JSON.stringify(id)}: ${parsedId.error.issues[0]?.message}`);
    if (this.devices.has(id)) throw new SensorpipeError('REGISTRY_CONFLICT', `device ${id} already exists`);
    const parsed = AddDeviceOptionsSchema.safeParse(input);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      // Metadata keeps the message it always had ("invalid metadata site: …").
      const meta = issue?.path[0] === 'meta';
      const path = (meta ? issue.path.slice(1) : (issue?.path ?? [])).join('.');
      throw new SensorpipeError('CONFIG_INVALID', `invalid ${meta ? 'metadata' : 'option'} ${path || '(options)'}: ${issue?.message}`);
    }
    const options = parsed.data;
    const trust = options.trust ?? 'signed';
    if (trust === 'broker-authenticated' && options.alg !== undefined) throw new SensorpipeError('CONFIG_INVALID', 'a broker-authenticated device has no signing key: --alg does not apply');
    const problem = mappingProblem(id, trust, options.payload);
    if (problem !== undefined) throw new SensorpipeError('CONFIG_INVALID', `invalid payload mapping: ${problem}`);
    const now = (options.now ?? new Date()).toISOString();
    const meta = options.meta ?? {};
    if (trust === 'broker-authenticated') {
      const issued = issueMqttCredentials();
      this.devices.set(id, { id, status: 'active', createdAt: now, updatedAt: now, trust, mqtt: issued.mqtt, signing: { alg: 'none' }, payload: options.payload, meta });
      return { deviceId: id, mqttPassword: issued.mqttPassword, trust };
    }
    const issued = issueCredentials(id, options.alg ?? 'hmac-sha256');
    this.devices.set(id, { id, status: 'active', createdAt: now, updatedAt: now, mqtt: issued.mqtt, signing: issued.signing, meta });
    return issued.credentials;
  }

  revoke(id: string, now = new Date()): DeviceRecord {
    const record = this.require(id);
    const revoked: DeviceRecord = { ...record, status: 'revoked', revokedAt: now.toISOString(), updatedAt: now.toISOString() };
    this.devices.set(id, revoked);
    return revoked;
  }

  /**
   * New MQTT secret and new signing key; the old ones stop working as soon as the file is saved. For a
   * signed device; a broker-authenticated one has no key: `rotatePassword`.
   */
  rotate(id: string, options: { alg?: SignatureAlgorithm; now?: Date } = {}): DeviceCredentials {
    const record = this.require(id);
    if (record.signing.alg === 'none') throw new SensorpipeError('CONFIG_INVALID', `device ${id} is broker-authenticated and has no signing key: rotate its MQTT password (rotatePassword)`);
    const issued = issueCredentials(id, options.alg ?? record.signing.alg);
    this.devices.set(id, { ...record, mqtt: issued.mqtt, signing: issued.signing, updatedAt: (options.now ?? new Date()).toISOString() });
    return issued.credentials;
  }

  /** A new MQTT password for a broker-authenticated device (it has no signing key to rotate). */
  rotatePassword(id: string, now = new Date()): BrokerDeviceCredentials {
    const record = this.require(id);
    if (record.trust !== 'broker-authenticated') throw new SensorpipeError('CONFIG_INVALID', `device ${id} is signed: rotate its password and key together (rotate)`);
    const issued = issueMqttCredentials();
    this.devices.set(id, { ...record, mqtt: issued.mqtt, updatedAt: now.toISOString() });
    return { deviceId: id, mqttPassword: issued.mqttPassword, trust: 'broker-authenticated' };
  }

  toJSON(): z.infer<typeof RegistryFileSchema> {
    return { format: 'sensorpipe-registry', version: 1, devices: this.list() };
  }

  private require(id: string): DeviceRecord {
    const record = this.devices.get(id);
    if (record === undefined) throw new SensorpipeError('DEVICE_UNKNOWN', `no device ${id} in the registry`);
    return record;
  }
}

function mqttVerifier(salt: Buffer, password: string): Buffer {
  return createHmac('sha256', salt).update(password, 'utf8').digest();
}

function issueMqttCredentials() {
  const mqttPassword = randomBytes(32).toString('base64url');
  const salt = randomBytes(16);
  const mqtt = { scheme: 'hmac-sha256' as const, salt: salt.toString('base64'), hash: mqttVerifier(salt, mqttPassword).toString('base64') };
  return { mqttPassword, mqtt };
}

function issueCredentials(deviceId: string, alg: SignatureAlgorithm) {
  const { mqttPassword, mqtt } = issueMqttCredentials();
  if (alg === 'hmac-sha256') {
    const key = generateHmacKey().toString('base64');
    return { mqtt, signing: { alg, key }, credentials: { deviceId, mqttPassword, signing: { alg, key } } satisfies DeviceCredentials };
  }
  const pair = generateEd25519KeyPair();
  const publicKey = pair.publicKey.toString('base64');
  return {
    mqtt,
    signing: { alg, publicKey },
    credentials: { deviceId, mqttPassword, signing: { alg, privateKey: pair.privateKey.toString('base64'), publicKey } } satisfies DeviceCredentials,
  };
}

/** Constant-time check of an MQTT password against a device's stored verifier. */
export function verifyMqttPassword(record: DeviceRecord, password: Buffer | string): boolean {
  const expected = Buffer.from(record.mqtt.hash, 'base64');
  const actual = createHmac('sha256', Buffer.from(record.mqtt.salt, 'base64')).update(password).digest();
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}

/** The key that verifies a signed device's messages; a broker-authenticated device has none (throws). */
export function verifyKeyOf(record: DeviceRecord): VerifyKey {
  const signing = record.signing;
  if (signing.alg === 'none') throw new SensorpipeError('CONFIG_INVALID', `device ${record.id} is broker-authenticated: it has no signing key`);
  return signing.alg === 'hmac-sha256'
    ? { alg: 'hmac-sha256', key: Buffer.from(signing.key, 'base64') }
    : { alg: 'ed25519', publicKey: Buffer.from(signing.publicKey, 'base64') };
}

/** Checks that an Ed25519 private key (raw seed, base64) matches a record's public key. */
export function ed25519KeyMatches(record: DeviceRecord, privateKeyBase64: string): boolean {
  return record.signing.alg === 'ed25519' && ed25519PublicKeyFromSeed(Buffer.from(privateKeyBase64, 'base64')).toString('base64') === record.signing.publicKey;
}

/** Reads the registry. A missing file is an empty registry; an unreadable one is an error. */
export async function loadRegistry(path: string): Promise<Registry> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Registry();
    throw err;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new SensorpipeError('REGISTRY_CORRUPT', `registry ${path} is not valid JSON (${(err as Error).message}); it was left untouched`);
  }
  const parsed = RegistryFileSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new SensorpipeError('REGISTRY_CORRUPT', `registry ${path} is malformed at ${issue?.path.join('.') || '(root)'}: ${issue?.message}; it was left untouched`);
  }
  const ids = new Set<string>();
  for (const record of parsed.data.devices) {
    if (ids.has(record.id)) throw new SensorpipeError('REGISTRY_CORRUPT', `registry ${path} lists device ${record.id} twice; it was left untouched`);
    ids.add(record.id);
  }
  return new Registry(parsed.data.devices);
}

/** Writes the registry atomically with mode 0600: readers see the old file or the new one, never half. */
export async function saveRegistry(path: string, registry: Registry): Promise<void> {
  const temp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const handle = await open(temp, fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_WRONLY, 0o600);
  try {
    await handle.writeFile(`${JSON.stringify(registry.toJSON(), null, 2)}\n`, 'utf8');
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await rename(temp, path);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
  const dir = await open(dirname(path), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

const LOCK_STALE_MS = 30_000;

/**
 * Load, change and save under an exclusive lock file, so two `sensorpipe devices` commands cannot
 * lose each other's changes. A lock older than 30 s is taken to be left by a crashed process.
 */
export async function updateRegistry<T>(path: string, change: (registry: Registry) => T): Promise<T> {
  const lock = `${path}.lock`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      await writeFile(lock, String(process.pid), { flag: 'wx', mode: 0o600 });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const age = await stat(lock).then((s) => Date.now() - s.mtimeMs, () => 0);
      if (age > LOCK_STALE_MS) await rm(lock, { force: true });
      else if (Date.now() > deadline) throw new SensorpipeError('REGISTRY_CONFLICT', `registry ${path} is locked by another process (${lock})`);
      else await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  try {
    const registry = await loadRegistry(path);
    const result = change(registry);
    await saveRegistry(path, registry);
    return result;
  } finally {
    await rm(lock, { force: true });
  }
}

/** The record schema, for the other registry stores (core/registry-redis.ts): every record they read is checked with it, as the file is. */
export { DeviceRecordSchema };

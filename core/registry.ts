/**
 * The device registry: one JSON file, the list of devices that may connect and whose readings count.
 *
 * Per device: id, status (active/revoked), the MQTT credential *verifier* (never the secret), the key
 * that verifies its signatures (an HMAC key, or only an Ed25519 public key), and metadata.
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
import { DeviceIdSchema, DeviceMetaSchema, type DeviceMeta } from './schemas.ts';
import {
  ed25519PublicKeyFromSeed,
  generateEd25519KeyPair,
  generateHmacKey,
  type SignatureAlgorithm,
  type VerifyKey,
} from './signature.ts';

const Base64 = z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/);

const DeviceRecordSchema = z.strictObject({
  id: DeviceIdSchema,
  status: z.enum(['active', 'revoked']),
  createdAt: z.iso.datetime(),
  updatedAt: z.iso.datetime(),
  revokedAt: z.iso.datetime().optional(),
  mqtt: z.strictObject({ scheme: z.literal('hmac-sha256'), salt: Base64, hash: Base64 }),
  signing: z.discriminatedUnion('alg', [
    z.strictObject({ alg: z.literal('hmac-sha256'), key: Base64 }),
    z.strictObject({ alg: z.literal('ed25519'), publicKey: Base64 }),
  ]),
  meta: DeviceMetaSchema,
});
export type DeviceRecord = z.infer<typeof DeviceRecordSchema>;

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

  add(id: string, options: { alg?: SignatureAlgorithm; meta?: DeviceMeta; now?: Date } = {}): DeviceCredentials {
    const parsedId = DeviceIdSchema.safeParse(id);
    if (!parsedId.success) throw new SensorpipeError('CONFIG_INVALID', `invalid device id ${JSON.stringify(id)}: ${parsedId.error.issues[0]?.message}`);
    if (this.devices.has(id)) throw new SensorpipeError('REGISTRY_CONFLICT', `device ${id} already exists`);
    const meta = DeviceMetaSchema.safeParse(options.meta ?? {});
    if (!meta.success) {
      const issue = meta.error.issues[0];
      throw new SensorpipeError('CONFIG_INVALID', `invalid metadata ${issue?.path.join('.')}: ${issue?.message}`);
    }
    const now = (options.now ?? new Date()).toISOString();
    const issued = issueCredentials(id, options.alg ?? 'hmac-sha256');
    this.devices.set(id, { id, status: 'active', createdAt: now, updatedAt: now, mqtt: issued.mqtt, signing: issued.signing, meta: meta.data });
    return issued.credentials;
  }

  revoke(id: string, now = new Date()): DeviceRecord {
    const record = this.require(id);
    const revoked: DeviceRecord = { ...record, status: 'revoked', revokedAt: now.toISOString(), updatedAt: now.toISOString() };
    this.devices.set(id, revoked);
    return revoked;
  }

  /** New MQTT secret and new signing key; the old ones stop working as soon as the file is saved. */
  rotate(id: string, options: { alg?: SignatureAlgorithm; now?: Date } = {}): DeviceCredentials {
    const record = this.require(id);
    const issued = issueCredentials(id, options.alg ?? record.signing.alg);
    this.devices.set(id, { ...record, mqtt: issued.mqtt, signing: issued.signing, updatedAt: (options.now ?? new Date()).toISOString() });
    return issued.credentials;
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

function issueCredentials(deviceId: string, alg: SignatureAlgorithm) {
  const mqttPassword = randomBytes(32).toString('base64url');
  const salt = randomBytes(16);
  const mqtt = { scheme: 'hmac-sha256' as const, salt: salt.toString('base64'), hash: mqttVerifier(salt, mqttPassword).toString('base64') };
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

export function verifyKeyOf(record: DeviceRecord): VerifyKey {
  return record.signing.alg === 'hmac-sha256'
    ? { alg: 'hmac-sha256', key: Buffer.from(record.signing.key, 'base64') }
    : { alg: 'ed25519', publicKey: Buffer.from(record.signing.publicKey, 'base64') };
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

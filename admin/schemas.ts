/**
 * The admin API's messages, one zod schema each: what `sensorpipe devices` and the admin HTTP API accept
 * (validated by admin/devices.ts, the one implementation both use) and what they answer. The OpenAPI
 * description (admin/openapi.ts) is generated from these same schemas.
 *
 * Request schemas add nothing (no defaults, no transforms): the HTTP side checks that every member of
 * the JSON text is kept by parsing, which needs the parsed value to hold exactly what was written.
 */
import { z } from 'zod';
import { PayloadMappingSchema } from '../core/mappings.ts';
import { TRUST_LEVELS } from '../core/registry.ts';
import { rulesFromMeta } from '../core/alert-rules.ts';
import { DeviceIdSchema, DeviceMetaSchema, MetaAlertsSchema, MetaValueSchema } from '../core/schemas.ts';

/** Most devices one bulk add may carry: one registry write, and a file of credentials the caller must keep. */
export const BULK_MAX_DEVICES = 10_000;

export const SignatureAlgSchema = z.enum(['hmac-sha256', 'ed25519']).meta({ description: 'hmac-sha256 (a shared key) or ed25519 (the server keeps only the public key).' });

/** The device's own alert rules, checked against their grammar here, so that a bad clause is refused at the door. */
const DeviceAlertsSchema = MetaAlertsSchema.superRefine((text, ctx) => {
  const problem = rulesFromMeta('device', { alerts: text }).problems[0];
  if (problem !== undefined) ctx.addIssue({ code: 'custom', message: `alerts ${problem} (README "Alerts")` });
}).meta({ description: 'The device\'s own alert rules, clauses separated by ";" (README "Alerts"), e.g. "temperature > 35 clear 33 for 30s; silent 2m".' });

/** One device to add: the id, its signature scheme (default hmac-sha256) and metadata. Also one row of a bulk file. */
export const AddDeviceSchema = z
  .strictObject({
    id: DeviceIdSchema,
    alg: SignatureAlgSchema.optional(),
    trust: z.enum(TRUST_LEVELS).optional().meta({ description: 'signed (the default: every message signed) or broker-authenticated (its own MQTT login and topics, unsigned payloads read with `payload`; core/PROTOCOL.md).' }),
    payload: PayloadMappingSchema.optional().meta({ description: 'broker-authenticated devices only: how their payloads are read (core/mappings.ts).' }),
    site: MetaValueSchema.optional(),
    model: MetaValueSchema.optional(),
    profile: MetaValueSchema.optional(),
    alerts: DeviceAlertsSchema.optional(),
  })
  .meta({ id: 'AddDevice', description: 'A device to register. Its credentials are generated and returned once.' });
export type AddDevice = z.infer<typeof AddDeviceSchema>;

export const RotateDeviceSchema = z
  .strictObject({ alg: SignatureAlgSchema.optional() })
  .meta({ id: 'RotateDevice', description: 'Optional: a new signature scheme. Without it the device keeps its scheme.' });
export type RotateDevice = z.infer<typeof RotateDeviceSchema>;

/** A metadata change: a value sets the field, null removes it, an absent field stays as it is. */
export const UpdateDeviceSchema = z
  .strictObject({
    site: MetaValueSchema.nullable().optional(),
    model: MetaValueSchema.nullable().optional(),
    profile: MetaValueSchema.nullable().optional(),
    alerts: DeviceAlertsSchema.nullable().optional(),
  })
  .refine((change) => Object.keys(change).length > 0, 'give at least one of site, model, profile, alerts (null removes one)')
  .meta({ id: 'UpdateDevice', description: 'Metadata to change: a string sets the field, null removes it, an absent field is left as it is.' });
export type UpdateDevice = z.infer<typeof UpdateDeviceSchema>;

export const BulkAddSchema = z
  .strictObject({ devices: z.array(AddDeviceSchema).min(1).max(BULK_MAX_DEVICES) })
  .meta({ id: 'BulkAdd', description: `Devices to add, all or none (at most ${BULK_MAX_DEVICES}). As text/csv: a header row naming the columns id, alg, trust, payload, site, model, profile (id required), one device per row; payload is a mapping\'s name (flat-json, tasmota, shelly-gen2) or its JSON.` });

export const DeviceSummarySchema = z
  .strictObject({
    id: DeviceIdSchema,
    status: z.enum(['active', 'revoked']),
    alg: z.enum(['hmac-sha256', 'ed25519', 'none']).meta({ description: 'The signature scheme; none for a broker-authenticated device (unsigned payloads).' }),
    trust: z.enum(['signed', 'broker-authenticated']),
    publicKey: z.string().optional().meta({ description: 'Ed25519 devices: the public key (base64). Never a secret.' }),
    meta: DeviceMetaSchema,
    createdAt: z.iso.datetime(),
    updatedAt: z.iso.datetime(),
    revokedAt: z.iso.datetime().optional(),
  })
  .meta({ id: 'Device', description: 'A registered device, without secrets.' });
export type DeviceSummary = z.infer<typeof DeviceSummarySchema>;

export const DeviceListSchema = z.strictObject({ devices: z.array(DeviceSummarySchema) }).meta({ id: 'DeviceList' });

/** The shape of core/registry.ts's IssuedCredentials, as `sensorpipe devices add --json` prints them. */
const SignedCredentialsSchema = z
  .strictObject({
    deviceId: DeviceIdSchema,
    mqttPassword: z.string().meta({ description: 'MQTT password (username = client id = device id). Shown once, never stored.' }),
    signing: z.discriminatedUnion('alg', [
      z.strictObject({ alg: z.literal('hmac-sha256'), key: z.string().meta({ description: 'HMAC-SHA256 key, base64 (32 bytes). Shown once.' }) }),
      z.strictObject({
        alg: z.literal('ed25519'),
        privateKey: z.string().meta({ description: 'Ed25519 private key (the 32-byte seed), base64. Shown once, never stored.' }),
        publicKey: z.string(),
      }),
    ]),
  })
  .meta({ description: 'A signed device\'s secrets.' });

export const CredentialsSchema = z
  .union([
    SignedCredentialsSchema,
    z.strictObject({ deviceId: DeviceIdSchema, mqttPassword: z.string(), trust: z.literal('broker-authenticated') }).meta({ description: 'A broker-authenticated device\'s MQTT password: it has no signing key.' }),
  ])
  .meta({ id: 'Credentials', description: 'A device\'s secrets. Returned once, by add, rotate and bulk add; kept nowhere on the server.' });

export const BulkCredentialsSchema = z.strictObject({ devices: z.array(CredentialsSchema) }).meta({ id: 'BulkCredentials' });

/**
 * A device's new credentials, written out in the form a firmware build takes them: `text` for people,
 * `json` (core/registry.ts's DeviceCredentials, as `devices add --json` always printed it), `env` (lines
 * that a shell can `source`, that systemd's EnvironmentFile and docker's --env-file read, named as the
 * Python SDK's example reads them: sdk/python/examples/bme280_publish.py) and `c-header` (the settings
 * of the C SDK's example sketch, sdk/c/examples/esp32_bme280_pubsubclient: DEVICE_ID, MQTT_PASSWORD and
 * SIGNING_KEY, plus SIGNING_ALG for sp_device_init).
 */
import type { DeviceCredentials, IssuedCredentials } from '../core/registry.ts';
import { topics } from '../core/topics.ts';

export const CREDENTIAL_FORMATS = ['text', 'env', 'json', 'c-header'] as const;
export type CredentialFormat = (typeof CREDENTIAL_FORMATS)[number];

/** The secret the device signs with: the HMAC key, or the Ed25519 seed (base64). */
function signingSecret(credentials: DeviceCredentials): string {
  return credentials.signing.alg === 'hmac-sha256' ? credentials.signing.key : credentials.signing.privateKey;
}

/** A signed device's credentials (it has a signing key), as opposed to a broker-authenticated one's. */
export function isSigned(credentials: IssuedCredentials): credentials is DeviceCredentials {
  return 'signing' in credentials;
}

const UNSIGNED_NOTE = 'broker-authenticated: it logs in with this password and sends unsigned payloads (no signing key)';

export function credentialsText(credentials: IssuedCredentials): string {
  if (!isSigned(credentials)) {
    return [`device:        ${credentials.deviceId}`, `mqtt username: ${credentials.deviceId}`, `mqtt password: ${credentials.mqttPassword}`, `trust:         ${UNSIGNED_NOTE}`, '', 'This password is shown once and is not stored. Keep it on the device.', ''].join('\n');
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
  return `${lines.join('\n')}\n`;
}

/**
 * KEY=value lines. Every value is a slug or base64 (A–Z a–z 0–9 + / = - _), so no quoting is needed
 * by any of the readers; `set -a; . ./device.env; set +a` exports them to a program started after.
 */
export function credentialsEnv(credentials: IssuedCredentials): string {
  if (!isSigned(credentials)) {
    return [`# sensorpipe device ${credentials.deviceId} (${UNSIGNED_NOTE}): shown once. Keep this file private (chmod 600).`, `SENSORPIPE_DEVICE_ID=${credentials.deviceId}`, `SENSORPIPE_MQTT_PASSWORD=${credentials.mqttPassword}`, ''].join('\n');
  }
  return [
    `# sensorpipe device ${credentials.deviceId}: secrets, shown once. Keep this file private (chmod 600).`,
    `SENSORPIPE_DEVICE_ID=${credentials.deviceId}`,
    `SENSORPIPE_MQTT_PASSWORD=${credentials.mqttPassword}`,
    `SENSORPIPE_ALG=${credentials.signing.alg}`,
    `SENSORPIPE_SIGNING_KEY=${signingSecret(credentials)}`,
    '',
  ].join('\n');
}

/** A C array initialiser of bytes, 8 per line. */
function cBytes(bytes: Buffer): string {
  const hex = [...bytes].map((b) => `0x${b.toString(16).padStart(2, '0')}`);
  const lines: string[] = [];
  for (let i = 0; i < hex.length; i += 8) lines.push(`    ${hex.slice(i, i + 8).join(', ')}`);
  return lines.join(',\n');
}

/**
 * A header to include in place of the example sketch's DEVICE_ID / MQTT_PASSWORD / SIGNING_KEY settings
 * (same names, same types), so `sp_device_init(&device, DEVICE_ID, SIGNING_ALG, SIGNING_KEY, …)` and
 * `client.connect(DEVICE_ID, DEVICE_ID, MQTT_PASSWORD, …)` work unchanged. For Ed25519, SIGNING_KEY is
 * the 32-byte private seed, as sp_device_init takes it.
 */
export function credentialsCHeader(credentials: IssuedCredentials): string {
  const id = credentials.deviceId;
  const guard = `SENSORPIPE_DEVICE_${id.toUpperCase().replace(/-/g, '_')}_H`;
  if (!isSigned(credentials)) {
    return [
      `/* sensorpipe device ${id}: ${UNSIGNED_NOTE}. Its password is shown once; keep this file out of version control. */`,
      `#ifndef ${guard}`,
      `#define ${guard}`,
      '',
      `static const char *DEVICE_ID = "${id}"; /* MQTT client id and username */`,
      `static const char *MQTT_PASSWORD = "${credentials.mqttPassword}";`,
      '',
      `#endif /* ${guard} */`,
      '',
    ].join('\n');
  }
  const key = Buffer.from(signingSecret(credentials), 'base64');
  const alg = credentials.signing.alg === 'hmac-sha256' ? 'SP_HMAC_SHA256' : 'SP_ED25519';
  // Device ids are slugs and the password base64url: nothing in them needs escaping in a C string.
  return [
    `/* sensorpipe device ${id}: generated by \`sensorpipe devices\`; its secrets are shown once.`,
    ' * Keep this file out of version control. Include it after sensorpipe.h, in place of the',
    ' * DEVICE_ID, MQTT_PASSWORD and SIGNING_KEY settings of the example sketch. */',
    `#ifndef ${guard}`,
    `#define ${guard}`,
    '',
    '#include <stdint.h>',
    '#include "sensorpipe.h"',
    '',
    `static const char *DEVICE_ID = "${id}"; /* MQTT client id and username */`,
    `static const char *MQTT_PASSWORD = "${credentials.mqttPassword}";`,
    `static const sp_alg SIGNING_ALG = ${alg};`,
    `/* ${credentials.signing.alg === 'hmac-sha256' ? 'HMAC-SHA256 key' : 'Ed25519 private key (seed)'}, 32 bytes */`,
    `static const uint8_t SIGNING_KEY[32] = {\n${cBytes(key)}};`,
    `/* publish to ${topics.telemetry(id)}; Last Will and status on ${topics.status(id)} */`,
    '',
    `#endif /* ${guard} */`,
    '',
  ].join('\n');
}

export function formatCredentials(credentials: IssuedCredentials, format: CredentialFormat): string {
  switch (format) {
    case 'json':
      return `${JSON.stringify(credentials)}\n`;
    case 'env':
      return credentialsEnv(credentials);
    case 'c-header':
      return credentialsCHeader(credentials);
    case 'text':
      return credentialsText(credentials);
  }
}

/**
 * Signing and verifying telemetry (protocol v1). Two per-device schemes:
 *  - hmac-sha256: a 32-byte secret key shared by the device and the server;
 *  - ed25519: the device holds the private key, the server only the 32-byte public key.
 * Verification never short-circuits on content: HMAC tags are compared with timingSafeEqual and
 * Ed25519 verification is constant-time in OpenSSL.
 */
import {
  createHmac,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  sign as edSign,
  timingSafeEqual,
  verify as edVerify,
  type KeyObject,
} from 'node:crypto';
import { canonicalBytes } from './canonical.ts';
import type { TelemetryBody, TelemetryMessage } from './schemas.ts';

export type SignatureAlgorithm = 'hmac-sha256' | 'ed25519';

/** What the server holds to verify a device's messages. */
export type VerifyKey = { alg: 'hmac-sha256'; key: Buffer } | { alg: 'ed25519'; publicKey: Buffer };
/** What a device holds to sign. */
export type SignKey = { alg: 'hmac-sha256'; key: Buffer } | { alg: 'ed25519'; privateKey: Buffer };

// DER prefixes that wrap a raw 32-byte Ed25519 key into PKCS#8 / SPKI (RFC 8410), so that raw keys,
// the form firmware libraries use, can be handed to node:crypto.
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

function ed25519PrivateKey(seed: Buffer): KeyObject {
  return createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
}

function ed25519PublicKey(raw: Buffer): KeyObject {
  return createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
}

/**
 * KeyObjects of public keys already seen, by the Buffer holding the raw key: createPublicKey was 45% of
 * an Ed25519 verification (72 of 163 µs), and a verifier that keeps its VerifyKey (as ingest does, per
 * registry record) passes the same Buffer every time. A hit also compares the bytes with a private copy,
 * so a Buffer changed in place is never verified against its old key.
 */
const ed25519KeyObjects = new WeakMap<Buffer, { raw: Buffer; keyObject: KeyObject }>();

function ed25519VerifyKeyObject(raw: Buffer): KeyObject {
  const cached = ed25519KeyObjects.get(raw);
  if (cached !== undefined && cached.raw.equals(raw)) return cached.keyObject;
  const keyObject = ed25519PublicKey(raw);
  ed25519KeyObjects.set(raw, { raw: Buffer.from(raw), keyObject });
  return keyObject;
}

export function signCanonical(bytes: Buffer, key: SignKey): Buffer {
  if (key.alg === 'hmac-sha256') return createHmac('sha256', key.key).update(bytes).digest();
  return edSign(null, bytes, ed25519PrivateKey(key.privateKey));
}

export function verifyCanonical(bytes: Buffer, signature: Buffer, key: VerifyKey): boolean {
  if (key.alg === 'hmac-sha256') {
    const expected = createHmac('sha256', key.key).update(bytes).digest();
    // Length is public (32 bytes for every HMAC-SHA256 tag); only equal-length buffers are compared.
    return signature.length === expected.length && timingSafeEqual(signature, expected);
  }
  if (signature.length !== 64 || key.publicKey.length !== 32) return false;
  try {
    return edVerify(null, bytes, ed25519VerifyKeyObject(key.publicKey), signature);
  } catch {
    return false;
  }
}

/** Signs a message body and returns the full message with `sig` set. */
export function signTelemetry(body: TelemetryBody, key: SignKey): TelemetryMessage {
  return { ...body, sig: signCanonical(canonicalBytes(body), key).toString('base64') };
}

export function verifyTelemetrySignature(message: TelemetryMessage, key: VerifyKey): boolean {
  const { sig, ...body } = message;
  const signature = Buffer.from(sig, 'base64');
  // Node's base64 decoder ignores stray bits in the last character; accepting only the canonical
  // spelling keeps signatures non-malleable (one signature, one text).
  if (signature.toString('base64') !== sig) return false;
  return verifyCanonical(canonicalBytes(body), signature, key);
}

export function generateHmacKey(): Buffer {
  return randomBytes(32);
}

/** A fresh Ed25519 key pair as raw 32-byte seed and public key. */
export function generateEd25519KeyPair(): { privateKey: Buffer; publicKey: Buffer } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const pkcs8 = privateKey.export({ format: 'der', type: 'pkcs8' });
  const spki = publicKey.export({ format: 'der', type: 'spki' });
  return { privateKey: pkcs8.subarray(-32), publicKey: spki.subarray(-32) };
}

export function ed25519PublicKeyFromSeed(seed: Buffer): Buffer {
  return createPublicKey(ed25519PrivateKey(seed)).export({ format: 'der', type: 'spki' }).subarray(-32);
}

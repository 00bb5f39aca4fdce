/**
 * Canonical bytes and signatures: PROTOCOL.md's test vectors verify; any single flipped byte of the
 * signed bytes, the payload or the signature fails; another device's key fails; both schemes.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { canonicalBytes } from '../../core/canonical.ts';
import { decodeTelemetry } from '../../core/decode.ts';
import type { TelemetryBody } from '../../core/schemas.ts';
import {
  ed25519PublicKeyFromSeed,
  generateEd25519KeyPair,
  generateHmacKey,
  signCanonical,
  signTelemetry,
  verifyCanonical,
  verifyTelemetrySignature,
  type SignKey,
  type VerifyKey,
} from '../../core/signature.ts';
import { generateVectors, vectorsFromDocument, type TestVector } from '../../core/vectors.ts';

const protocolDoc = readFileSync(new URL('../../core/PROTOCOL.md', import.meta.url), 'utf8');
const vectors = vectorsFromDocument(protocolDoc);

function keysOf(vector: TestVector): { sign: SignKey; verify: VerifyKey } {
  const key = Buffer.from(vector.keyHex, 'hex');
  if (vector.alg === 'hmac-sha256') return { sign: { alg: 'hmac-sha256', key }, verify: { alg: 'hmac-sha256', key } };
  return { sign: { alg: 'ed25519', privateKey: key }, verify: { alg: 'ed25519', publicKey: Buffer.from(vector.publicKeyHex!, 'hex') } };
}

function verifyPayload(payload: Buffer, key: VerifyKey): boolean {
  const decoded = decodeTelemetry(payload);
  return decoded.ok && verifyTelemetrySignature(decoded.value, key);
}

describe('PROTOCOL.md test vectors', () => {
  it('are in the document and current', () => {
    expect(vectors.length).toBeGreaterThanOrEqual(6);
    expect(new Set(vectors.map((v) => v.alg))).toEqual(new Set(['hmac-sha256', 'ed25519']));
    expect(vectors).toEqual(generateVectors());
  });

  it.each(vectors.map((v) => [v.name, v] as const))('%s', (_name, vector) => {
    const { sign, verify } = keysOf(vector);
    const canonical = canonicalBytes(vector.body);
    expect(canonical.toString('hex')).toBe(vector.canonicalHex);
    expect(signCanonical(canonical, sign).toString('base64')).toBe(vector.signatureBase64);
    expect(verifyPayload(Buffer.from(vector.payload), verify)).toBe(true);
    if (vector.alg === 'ed25519') {
      expect(ed25519PublicKeyFromSeed(Buffer.from(vector.keyHex, 'hex')).toString('hex')).toBe(vector.publicKeyHex);
    }
  });

  it('uses the RFC 8032 §7.1 test 1 key pair for Ed25519', () => {
    const ed = vectors.find((v) => v.alg === 'ed25519')!;
    expect(ed.publicKeyHex).toBe('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a');
  });
});

describe('tampering', () => {
  it.each(vectors.map((v) => [v.name, v] as const))('any flipped byte of the signed bytes fails: %s', (_name, vector) => {
    const { verify } = keysOf(vector);
    const canonical = Buffer.from(vector.canonicalHex, 'hex');
    const signature = Buffer.from(vector.signatureBase64, 'base64');
    expect(verifyCanonical(canonical, signature, verify)).toBe(true);
    for (let i = 0; i < canonical.length; i++) {
      const tampered = Buffer.from(canonical);
      tampered[i] = tampered[i]! ^ 0x01;
      expect(verifyCanonical(tampered, signature, verify), `byte ${i}`).toBe(false);
    }
    for (let i = 0; i < signature.length; i++) {
      const tampered = Buffer.from(signature);
      tampered[i] = tampered[i]! ^ 0x80;
      expect(verifyCanonical(canonical, tampered, verify), `signature byte ${i}`).toBe(false);
    }
  });

  // The signature covers values, not their spelling: "1e-9" and "1E-9" are the same reading. So a flip
  // may only ever verify if the message still says exactly what was signed.
  it.each(vectors.map((v) => [v.name, v] as const))('no flipped byte of the MQTT payload changes what verifies: %s', (_name, vector) => {
    const { verify } = keysOf(vector);
    const payload = Buffer.from(vector.payload);
    let refused = 0;
    for (let i = 0; i < payload.length; i++) {
      for (const mask of [0x01, 0x02, 0x20]) {
        const tampered = Buffer.from(payload);
        tampered[i] = tampered[i]! ^ mask;
        const decoded = decodeTelemetry(tampered);
        if (decoded.ok && verifyTelemetrySignature(decoded.value, verify)) {
          const { sig: _sig, ...body } = decoded.value;
          expect(body, `byte ${i} ^ ${mask} verified with changed content`).toEqual(vector.body);
        } else {
          refused++;
        }
      }
    }
    expect(refused).toBeGreaterThan(payload.length * 3 - 10);
  });

  it('refuses a signature of the wrong length, and a truncated one', () => {
    const key = generateHmacKey();
    const bytes = Buffer.from('SPv1');
    const tag = signCanonical(bytes, { alg: 'hmac-sha256', key });
    expect(verifyCanonical(bytes, tag.subarray(0, 31), { alg: 'hmac-sha256', key })).toBe(false);
    expect(verifyCanonical(bytes, Buffer.concat([tag, Buffer.alloc(1)]), { alg: 'hmac-sha256', key })).toBe(false);
    expect(verifyCanonical(bytes, Buffer.alloc(0), { alg: 'ed25519', publicKey: Buffer.alloc(32) })).toBe(false);
    expect(verifyCanonical(bytes, Buffer.alloc(64), { alg: 'ed25519', publicKey: Buffer.alloc(5) })).toBe(false);
  });
});

describe('keys of other devices', () => {
  const body: TelemetryBody = { v: 1, device: 'dev-1', readings: [{ seq: 7, ts: Date.UTC(2026, 0, 1), values: { t: 1.25 } }] };

  it('an HMAC key of another device fails', () => {
    const mine = generateHmacKey();
    const theirs = generateHmacKey();
    const message = signTelemetry(body, { alg: 'hmac-sha256', key: mine });
    expect(verifyTelemetrySignature(message, { alg: 'hmac-sha256', key: mine })).toBe(true);
    expect(verifyTelemetrySignature(message, { alg: 'hmac-sha256', key: theirs })).toBe(false);
  });

  it('an Ed25519 public key of another device fails, and the server needs only the public key', () => {
    const mine = generateEd25519KeyPair();
    const theirs = generateEd25519KeyPair();
    const message = signTelemetry(body, { alg: 'ed25519', privateKey: mine.privateKey });
    expect(verifyTelemetrySignature(message, { alg: 'ed25519', publicKey: mine.publicKey })).toBe(true);
    expect(verifyTelemetrySignature(message, { alg: 'ed25519', publicKey: theirs.publicKey })).toBe(false);
  });

  it('an HMAC tag cannot pass as Ed25519 nor the reverse (the registry fixes the scheme)', () => {
    const pair = generateEd25519KeyPair();
    const hmacMessage = signTelemetry(body, { alg: 'hmac-sha256', key: pair.publicKey });
    expect(verifyTelemetrySignature(hmacMessage, { alg: 'ed25519', publicKey: pair.publicKey })).toBe(false);
  });
});

describe('canonical bytes', () => {
  const base = (values: Record<string, number>): TelemetryBody => ({ v: 1, device: 'd', readings: [{ seq: 1, ts: Date.UTC(2026, 0, 1), values }] });

  it('do not depend on the order of metrics in the JSON object', () => {
    expect(canonicalBytes(base({ a: 1, b: 2, c: 3 }))).toEqual(canonicalBytes(base({ c: 3, a: 1, b: 2 })));
  });

  it('sign -0 as +0, so a serialiser that prints -0 as 0 still verifies', () => {
    expect(canonicalBytes(base({ a: -0 }))).toEqual(canonicalBytes(base({ a: 0 })));
    const key: SignKey = { alg: 'hmac-sha256', key: generateHmacKey() };
    const sent = JSON.stringify(signTelemetry(base({ a: -0 }), key));
    expect(verifyPayload(Buffer.from(sent), { alg: 'hmac-sha256', key: (key as { key: Buffer }).key })).toBe(true);
  });

  it('survive a JSON round trip for any finite double', () => {
    const key = generateHmacKey();
    const view = new DataView(new ArrayBuffer(8));
    let checked = 0;
    for (let i = 0; checked < 2000; i++) {
      for (let b = 0; b < 8; b++) view.setUint8(b, (i * 2654435761 + b * 40503) & 0xff ^ (i >> b));
      const value = view.getFloat64(0);
      if (!Number.isFinite(value)) continue;
      const payload = JSON.stringify(signTelemetry(base({ x: value, y: i / 7 }), { alg: 'hmac-sha256', key }));
      expect(verifyPayload(Buffer.from(payload), { alg: 'hmac-sha256', key }), `value ${value}`).toBe(true);
      checked++;
    }
  });

  it('differ when any field differs', () => {
    const one = canonicalBytes(base({ a: 1 }));
    expect(canonicalBytes(base({ a: 1.0000000000000002 }))).not.toEqual(one);
    expect(canonicalBytes(base({ b: 1 }))).not.toEqual(one);
    expect(canonicalBytes({ ...base({ a: 1 }), device: 'e' })).not.toEqual(one);
  });
});

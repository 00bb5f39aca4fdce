/**
 * Protocol test vectors: fixed keys and messages → canonical bytes and signatures. PROTOCOL.md
 * carries their output in a JSON block; the test suite reads that block back and checks every vector,
 * so the document cannot drift from the code. `npm run docs:gen` rewrites the block.
 */
import { canonicalBytes } from './canonical.ts';
import type { TelemetryBody } from './schemas.ts';
import { ed25519PublicKeyFromSeed, signCanonical, type SignKey } from './signature.ts';

export interface TestVector {
  name: string;
  alg: 'hmac-sha256' | 'ed25519';
  /** HMAC key, or Ed25519 private key seed (hex, 32 bytes). */
  keyHex: string;
  /** Ed25519 only: the public key the server keeps (hex, 32 bytes). */
  publicKeyHex?: string;
  body: TelemetryBody;
  canonicalHex: string;
  signatureBase64: string;
  /** The full MQTT payload as a device would send it. */
  payload: string;
}

const HMAC_KEY = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
const ED25519_SEED = Buffer.from('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60', 'hex');

const bodies: { name: string; body: TelemetryBody }[] = [
  {
    name: 'one reading, one metric',
    body: { v: 1, device: 'dev-001', readings: [{ seq: 1, ts: 1767225600000, values: { temperature: 21.5 } }] },
  },
  {
    name: 'one reading, metrics out of order, negative and fractional values',
    body: { v: 1, device: 'boiler-7', readings: [{ seq: 42, ts: 1767225601234, values: { pressure: 1013.25, humidity: 40.1, co2: 415, temperature: -3.75 } }] },
  },
  {
    name: 'batch after an outage, large sequence number, zero and tiny values',
    body: {
      v: 1,
      device: 'press-12',
      readings: [
        { seq: 9007199254740990, ts: 1767225600000, values: { current: 0, vibration_rms: 1e-9 } },
        { seq: 9007199254740991, ts: 1767225610000, values: { current: 12.000000000000002, vibration_rms: 123456789.125 } },
      ],
    },
  },
];

function vectorFor(name: string, body: TelemetryBody, alg: 'hmac-sha256' | 'ed25519'): TestVector {
  const key: SignKey = alg === 'hmac-sha256' ? { alg, key: HMAC_KEY } : { alg, privateKey: ED25519_SEED };
  const canonical = canonicalBytes(body);
  const signature = signCanonical(canonical, key).toString('base64');
  return {
    name: `${name} (${alg})`,
    alg,
    keyHex: (alg === 'hmac-sha256' ? HMAC_KEY : ED25519_SEED).toString('hex'),
    ...(alg === 'ed25519' ? { publicKeyHex: ed25519PublicKeyFromSeed(ED25519_SEED).toString('hex') } : {}),
    body,
    canonicalHex: canonical.toString('hex'),
    signatureBase64: signature,
    payload: JSON.stringify({ ...body, sig: signature }),
  };
}

export function generateVectors(): TestVector[] {
  return bodies.flatMap(({ name, body }) => [vectorFor(name, body, 'hmac-sha256'), vectorFor(name, body, 'ed25519')]);
}

export const VECTORS_BEGIN = '<!-- vectors:begin -->';
export const VECTORS_END = '<!-- vectors:end -->';

/** The vectors block as it stands in PROTOCOL.md. */
export function vectorsBlock(vectors: TestVector[]): string {
  return `${VECTORS_BEGIN}\n\`\`\`json\n${JSON.stringify(vectors, null, 2)}\n\`\`\`\n${VECTORS_END}`;
}

export function vectorsFromDocument(markdown: string): TestVector[] {
  const start = markdown.indexOf(VECTORS_BEGIN);
  const end = markdown.indexOf(VECTORS_END);
  if (start < 0 || end < start) throw new Error('PROTOCOL.md has no vectors block');
  const block = markdown.slice(start + VECTORS_BEGIN.length, end);
  const json = /```json\n([\s\S]*?)\n```/.exec(block)?.[1];
  if (json === undefined) throw new Error('the vectors block holds no json code block');
  return JSON.parse(json) as TestVector[];
}

/**
 * The Python device library (sdk/python): its own unit tests, run with python3, pass, and they check
 * every test vector of core/PROTOCOL.md byte for byte (canonical bytes, signature, payload) for both
 * schemes, none skipped. And they can fail: given vectors with one thing wrong (SENSORPIPE_VECTORS, a
 * copy of generateVectors() with one field changed), they fail and name the vector.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateVectors, vectorsFromDocument, type TestVector } from '../../core/vectors.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';

const SDK = fileURLToPath(new URL('../../sdk/python/', import.meta.url));
/** Debian's interpreter, where CI installs python3-cryptography (a pyenv shim on PATH may lack it). */
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

interface Run {
  code: number;
  output: string;
}

function runUnittest(env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      PYTHON,
      ['-m', 'unittest', '-v'],
      // No __pycache__ left in the source tree; SENSORPIPE_VECTORS only when given.
      { cwd: SDK, env: { PATH: process.env.PATH ?? '', PYTHONDONTWRITEBYTECODE: '1', ...env }, timeout: 60_000 },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1;
        resolve({ code, output: stdout + stderr });
      },
    );
  });
}

const documented = vectorsFromDocument(readFileSync(new URL('../../core/PROTOCOL.md', import.meta.url), 'utf8'));

let dir: TempDir;
beforeAll(async () => {
  dir = await tempDir('sensorpipe-sdk-python-');
});
afterAll(async () => {
  await dir?.remove();
});

describe('sdk/python', () => {
  it('passes its unit tests, with every vector of PROTOCOL.md checked for both schemes', async () => {
    const run = await runUnittest();
    expect(run.output).toMatch(/\nOK\n?$/);
    expect(run.code).toBe(0);
    expect(run.output).not.toMatch(/skipped/); // Ed25519 needs `cryptography`: CI installs python3-cryptography
    for (const scheme of ['HmacVectors', 'Ed25519Vectors']) {
      for (const check of ['test_canonical_bytes', 'test_signature', 'test_payload_is_byte_identical']) {
        expect(run.output).toMatch(new RegExp(`^${check} \\(tests\\.test_vectors\\.${scheme}(\\.${check})?\\) \\.\\.\\. ok$`, 'm'));
      }
    }
    expect(documented.length).toBeGreaterThanOrEqual(6);
  });

  // One field of one vector wrong at a time: each must make the Python tests fail, naming the vector.
  const mutations: { what: string; mutate(v: TestVector[]): TestVector }[] = [
    {
      what: 'a canonical byte (hmac)',
      mutate: (v) => {
        const x = v.find((t) => t.alg === 'hmac-sha256')!;
        x.canonicalHex = x.canonicalHex.slice(0, -1) + (x.canonicalHex.endsWith('0') ? '1' : '0');
        return x;
      },
    },
    {
      what: 'a signature (ed25519)',
      mutate: (v) => {
        const x = v.find((t) => t.alg === 'ed25519')!;
        x.signatureBase64 = (x.signatureBase64.startsWith('A') ? 'B' : 'A') + x.signatureBase64.slice(1);
        return x;
      },
    },
    {
      what: 'the printing of a number in the payload (1e-9 as Python prints it)',
      mutate: (v) => {
        const x = v.find((t) => t.payload.includes('1e-9'))!;
        x.payload = x.payload.replace('1e-9', '1e-09');
        return x;
      },
    },
    {
      what: 'a value in the body (the last bit of 40.1)',
      mutate: (v) => {
        const x = v.find((t) => JSON.stringify(t.body).includes('40.1'))!;
        x.body.readings[0]!.values.humidity = 40.10000000000001;
        return x;
      },
    },
  ];

  it.each(mutations.map((m) => [m.what, m] as const))('fails when a vector is wrong: %s', async (_what, mutation) => {
    const vectors = generateVectors();
    expect(vectors).toEqual(documented);
    const changed = mutation.mutate(vectors);
    const file = join(dir.path, 'vectors.json');
    await writeFile(file, JSON.stringify(vectors));
    const run = await runUnittest({ SENSORPIPE_VECTORS: file });
    expect(run.code).not.toBe(0);
    expect(run.output).toMatch(/\nFAILED \(failures=\d+\)\n?$/);
    expect(run.output).toContain(`vector='${changed.name}'`);
  });
});

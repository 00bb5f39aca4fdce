/**
 * The C device library (sdk/c) against the protocol's test vectors: compiles the library and its host
 * test (sdk/c/test/host_test.c) with `cc -std=c99 -Wall -Wextra -Werror -pedantic`, and runs it on the
 * vectors as core/vectors.ts generates them (the same as PROTOCOL.md's block, checked here) and on
 * PROTOCOL.md itself. The C program builds every message through the library's public API from the
 * vector's body and compares canonical bytes, signature, Ed25519 public key and payload byte for byte.
 * It also checks the library's number printing against JavaScript's on a few thousand doubles, since a
 * payload must print each value so that it reads back as the signed one. And the test fails when a
 * vector is wrong: one mutated vector makes exactly that vector fail.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateVectors, vectorsFromDocument, type TestVector } from '../../core/vectors.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';

const run = promisify(execFile);
const root = new URL('../../', import.meta.url).pathname;
const sdk = join(root, 'sdk/c');
const protocolPath = join(root, 'core/PROTOCOL.md');
const CFLAGS = ['-std=c99', '-Wall', '-Wextra', '-Werror', '-pedantic', '-O2'];
const SOURCES = ['src/sensorpipe.c', 'src/sp_sha256.c', 'src/sp_ed25519.c'].map((file) => join(sdk, file));

let dir: TempDir;
let hostTest: string;

beforeAll(async () => {
  dir = await tempDir('sensorpipe-sdk-c-');
  hostTest = join(dir.path, 'host_test');
  await run('cc', [...CFLAGS, '-I', join(sdk, 'src'), ...SOURCES, join(sdk, 'test/host_test.c'), '-o', hostTest]);
}, 120_000);
afterAll(async () => {
  await dir?.remove();
});

/** A deterministic spread of doubles: decimals as sensors give them, powers of two and ten, edges of
 * JavaScript's notation switch (1e21, 1e-7), extremes, and random bit patterns. */
function sampleNumbers(): number[] {
  let state = 0x2545f491;
  const random = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 2 ** 32;
  };
  const numbers = [0, -0, 1, -1, 0.1, 0.2, 0.30000000000000004, 21.5, 40.1, -3.75, 1e21, 1e-7, 1e-6, 123e-20, 1e20, 123456789012345680000];
  numbers.push(Number.MAX_VALUE, -Number.MAX_VALUE, Number.MIN_VALUE, 2.2250738585072014e-308, Number.MAX_SAFE_INTEGER, 5e-324);
  for (let e = -1074; e <= 1023; e += 7) numbers.push(2 ** e);
  for (let e = -30; e <= 30; e++) numbers.push(Number(`1e${e}`), Number(`-7.25e${e}`));
  const view = new DataView(new ArrayBuffer(8));
  for (let i = 0; i < 1500; i++) {
    view.setUint32(0, Math.floor(random() * 2 ** 32));
    view.setUint32(4, Math.floor(random() * 2 ** 32));
    const x = view.getFloat64(0);
    if (Number.isFinite(x)) numbers.push(x);
  }
  for (let i = 0; i < 1500; i++) {
    const decimals = Math.floor(random() * 6);
    numbers.push(Number(((random() - 0.5) * 10 ** Math.floor(random() * 8)).toFixed(decimals)));
  }
  return numbers;
}

function numberCases(): { bits: string; text: string }[] {
  return sampleNumbers().map((x) => {
    const bytes = Buffer.alloc(8);
    bytes.writeDoubleBE(x);
    return { bits: bytes.toString('hex'), text: JSON.stringify(x) };
  });
}

async function runHostTest(input: string): Promise<{ code: number; stdout: string }> {
  try {
    const { stdout } = await run(hostTest, [input], { maxBuffer: 16 * 1024 * 1024 });
    return { code: 0, stdout };
  } catch (err) {
    const e = err as { code?: number; stdout?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '' };
  }
}

async function runOnVectors(vectors: TestVector[], numbers = numberCases()) {
  const path = join(dir.path, `vectors-${Math.random().toString(36).slice(2)}.json`);
  await writeFile(path, JSON.stringify({ vectors, numbers }));
  return runHostTest(path);
}

const verdicts = (stdout: string) => Object.fromEntries([...stdout.matchAll(/^# vector (.*): (PASS|FAIL)$/gm)].map((m) => [m[1], m[2]]));

describe('C device library (sdk/c)', () => {
  const vectors = generateVectors();

  it("the vectors it is given are PROTOCOL.md's", () => {
    expect(vectorsFromDocument(readFileSync(protocolPath, 'utf8'))).toEqual(vectors);
    expect(vectors.map((v) => v.alg)).toContain('ed25519');
    expect(vectors.some((v) => v.body.readings.length > 1)).toBe(true);
  });

  it('passes every vector byte for byte (canonical bytes, signature, public key, payload), and prints numbers as JavaScript does', async () => {
    const { code, stdout } = await runOnVectors(vectors);
    expect(stdout).not.toMatch(/^not ok/m);
    expect(verdicts(stdout)).toEqual(Object.fromEntries(vectors.map((v) => [v.name, 'PASS'])));
    expect(stdout).toMatch(new RegExp(`^# vectors: ${vectors.length}, checks: \\d+, failed: 0$`, 'm'));
    expect(stdout).toMatch(/^ok \d+ - numbers: \d{4} numbers print as JavaScript prints them$/m);
    expect(code).toBe(0);
  });

  it('reads PROTOCOL.md itself', async () => {
    const { code, stdout } = await runHostTest(protocolPath);
    expect(verdicts(stdout)).toEqual(Object.fromEntries(vectors.map((v) => [v.name, 'PASS'])));
    expect(code).toBe(0);
  });

  it('fails on a wrong vector, naming it (canonical bytes, signature, payload, number text each)', async () => {
    const flip = (hexOrText: string, at: number) => hexOrText.slice(0, at) + (hexOrText[at] === '0' ? '1' : '0') + hexOrText.slice(at + 1);
    const mutated = vectors.map((v) => ({ ...v }));
    mutated[0]!.canonicalHex = flip(mutated[0]!.canonicalHex, mutated[0]!.canonicalHex.length - 1); // last byte of the value
    mutated[1]!.signatureBase64 = `A${mutated[1]!.signatureBase64.slice(1)}`;
    mutated[2]!.payload = mutated[2]!.payload.replace('1013.25', '1013.26');
    const { code, stdout } = await runOnVectors(mutated);
    expect(code).toBe(1);
    expect(verdicts(stdout)).toEqual(Object.fromEntries(vectors.map((v, i) => [v.name, i <= 2 ? 'FAIL' : 'PASS'])));
    expect(stdout).toContain(`not ok`);
    expect(stdout).toMatch(new RegExp(`^not ok \\d+ - ${escape(vectors[0]!.name)}: canonical bytes$`, 'm'));
    expect(stdout).toMatch(new RegExp(`^not ok \\d+ - ${escape(vectors[1]!.name)}: signature$`, 'm'));
    expect(stdout).toMatch(new RegExp(`^not ok \\d+ - ${escape(vectors[2]!.name)}: payload$`, 'm'));

    const numbers = numberCases();
    numbers[8] = { ...numbers[8]!, text: `${numbers[8]!.text}1` };
    const wrongNumber = await runOnVectors(vectors, numbers);
    expect(wrongNumber.code).toBe(1);
    expect(wrongNumber.stdout).toMatch(/^not ok \d+ - numbers: /m);
  });

  it('fails when there are no vectors at all', async () => {
    const { code } = await runOnVectors([]);
    expect(code).toBe(1);
  });

  it('builds without Ed25519 (-DSP_WITH_ED25519=0), and its header compiles as C++ (Arduino sketches)', async () => {
    for (const file of SOURCES) {
      await run('cc', [...CFLAGS, '-DSP_WITH_ED25519=0', '-I', join(sdk, 'src'), '-c', file, '-o', join(dir.path, 'no-ed25519.o')]);
    }
    const sketch = join(dir.path, 'sketch.cpp');
    await writeFile(sketch, '#include "sensorpipe.h"\nint main() { sp_device d; return sp_metric_index(&d, "x") < -1; }\n');
    await run('c++', ['-std=c++11', '-Wall', '-Wextra', '-Werror', '-pedantic', '-fsyntax-only', '-I', join(sdk, 'src'), sketch]);
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

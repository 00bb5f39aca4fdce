/** `sensorpipe sign` prints payloads that ingest's checks accept, with seqs counting up per device. */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeTelemetry } from '../../core/decode.ts';
import { loadRegistry, verifyKeyOf, type DeviceCredentials } from '../../core/registry.ts';
import { verifyTelemetrySignature } from '../../core/signature.ts';
import { runCli } from '../../harness/cli.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';

let dir: TempDir;
beforeAll(async () => {
  dir = await tempDir();
});
afterAll(async () => {
  await dir.remove();
});

describe('sensorpipe sign', () => {
  it.each(['hmac-sha256', 'ed25519'] as const)('signs with a %s key that the registry verifies', async (alg) => {
    const id = `dev-${alg === 'ed25519' ? 'ed' : 'hmac'}`;
    const creds = JSON.parse((await runCli(['devices', 'add', id, '--alg', alg, '--json', '--data-dir', dir.path])).stdout) as DeviceCredentials;
    const key = creds.signing.alg === 'hmac-sha256' ? creds.signing.key : creds.signing.privateKey;
    const record = (await loadRegistry(join(dir.path, 'registry.json'))).get(id)!;
    const seqs: number[] = [];
    for (let i = 0; i < 2; i++) {
      const result = await runCli(['sign', '--data-dir', dir.path, '--device', id, '--alg', alg, '--key', key, '--values', 'temperature=21.5,co2=415']);
      expect(result.stderr).toBe('');
      const decoded = decodeTelemetry(Buffer.from(result.stdout.trim()));
      if (!decoded.ok) throw new Error(decoded.message);
      expect(verifyTelemetrySignature(decoded.value, verifyKeyOf(record))).toBe(true);
      expect(decoded.value.readings[0]?.values).toEqual({ temperature: 21.5, co2: 415 });
      seqs.push(decoded.value.readings[0]!.seq);
    }
    expect(seqs).toEqual([1, 2]);
  });

  it('refuses bad values and keys with a message', async () => {
    for (const args of [['--values', 'temperature=abc'], ['--values', 'Bad=1'], ['--values', 'a=1', '--key', 'c2hvcnQ=']]) {
      const result = await runCli(['sign', '--data-dir', dir.path, '--device', 'd', '--key', Buffer.alloc(32).toString('base64'), ...args]);
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/CONFIG_INVALID/);
    }
  });
});

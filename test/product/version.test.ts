/** `sensorpipe --version` / `-V`: the version of package.json, exit 0, and listed in `--help`. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { runCli } from '../../harness/cli.ts';

const manifest = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

describe('sensorpipe --version', () => {
  it.each(['--version', '-V'])('%s prints the version of package.json and exits 0', async (flag) => {
    const result = await runCli([flag]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toBe(`${manifest.version}\n`);
    expect(result.stderr).toBe('');
  });

  it('--help lists it', async () => {
    const result = await runCli(['--help']);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^\s+-V, --version\s+\S/m);
  });

  it('a flag that only looks like it is still an unknown command', async () => {
    const result = await runCli(['--versions']);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
  });
});

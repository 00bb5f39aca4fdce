/**
 * `npm run build` (build.ts): the product compiled to JavaScript runs with plain Node, no tsx. Builds into
 * a folder of its own under test-artifacts/ (never dist/: other tests start cli/bin.js, which would run a
 * half-written dist/), then, in a Node process with no TypeScript loader (it fails to import a .ts file),
 * runs the compiled `sensorpipe --help`; starts the compiled `sensorpipe start` on free ports and loads
 * the dashboard it serves (the bundle is found from the build, not from display/web/dist); and checks
 * when cli/bin.js takes the build (cli/compiled.js).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, utimes } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { currentCompiledEntry } from '../../cli/compiled.js';
import { START_ON_FREE_PORTS } from '../../harness/cli.ts';
import { waitFor } from '../../harness/publisher.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const run = promisify(execFile);
/** The environment of a child with no TypeScript loader: none inherited through NODE_OPTIONS either. */
const { NODE_OPTIONS: _inherited, ...PLAIN_ENV } = process.env;

let outDir: string;
const children = new Set<ChildProcess>();

beforeAll(async () => {
  outDir = await mkdtemp(join(ROOT, 'test-artifacts', 'build-'));
  await run('npm', ['run', '--silent', 'build', '--', '--out-dir', relative(ROOT, outDir)], { cwd: ROOT, timeout: 90_000 });
}, 120_000);

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  if (outDir !== undefined) await rm(outDir, { recursive: true, force: true });
});

async function jsFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile() && e.name.endsWith('.js')).map((e) => join(e.parentPath, e.name));
}

describe('npm run build', () => {
  it('compiles every module of the CLI, with relative imports pointing at .js files', async () => {
    const files = (await jsFiles(outDir)).map((file) => relative(outDir, file));
    expect(files).toEqual(expect.arrayContaining(['cli/main.js', 'cli/start.js', 'broker/index.js', 'ingest/index.js', 'display/index.js', 'store/embedded.js', 'admin/devices.js', 'core/config.js']));
    // Tests, benches and the dashboard's browser sources are not part of the product.
    expect(files.filter((file) => /^(test|harness|bench|soak|display\/web\/src)\//.test(file))).toEqual([]);
    const tsSpecifiers: string[] = [];
    for (const file of await jsFiles(outDir)) {
      const text = await readFile(file, 'utf8');
      for (const m of text.matchAll(/(?:from\s*|import\s*\(\s*)['"](\.{1,2}\/[^'"]+)['"]/g)) if (!m[1]!.endsWith('.js')) tsSpecifiers.push(`${relative(outDir, file)}: ${m[1]}`);
    }
    expect(tsSpecifiers).toEqual([]);
    expect(JSON.parse(await readFile(join(outDir, 'package.json'), 'utf8'))).toMatchObject({ type: 'module' });
  });

  it('runs `sensorpipe --help` in a Node process that cannot load TypeScript', async () => {
    // One process: first proof that no loader is registered (none in execArgv, a .ts import fails),
    // then the compiled CLI as `sensorpipe --help`.
    const probe = `
      const hooks = process.execArgv.filter((arg) => /^(--import|--loader|--experimental-loader|--require|-r)\b/.test(arg));
      if (hooks.length > 0) throw new Error('a loader in execArgv: ' + hooks.join(' '));
      const ts = await import(${JSON.stringify(pathToFileURL(join(ROOT, 'core', 'limits.ts')).href)}).then(() => 'loaded', (err) => err.code);
      console.log('importing a .ts file: ' + ts);
      process.argv = [process.execPath, ${JSON.stringify(join(outDir, 'cli', 'main.js'))}, '--help'];
      await import(${JSON.stringify(pathToFileURL(join(outDir, 'cli', 'main.js')).href)});
    `;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', probe], { cwd: ROOT, env: PLAIN_ENV, timeout: 30_000 });
    expect(stdout).toContain('importing a .ts file: ERR_UNKNOWN_FILE_EXTENSION');
    expect(stdout).toContain('Usage: sensorpipe <command> [options]');
    expect(stdout).toMatch(/^\s+start\s/m);
  });

  describe('the compiled `sensorpipe start`', () => {
    let data: TempDir;
    beforeAll(async () => (data = await tempDir('sensorpipe-build-test-')));
    afterAll(async () => data.remove());

    it('runs the pipeline and serves the dashboard bundled into the build', async () => {
      const child = spawn(process.execPath, [join(outDir, 'cli', 'main.js'), 'start'], {
        cwd: ROOT,
        env: { ...PLAIN_ENV, ...START_ON_FREE_PORTS, SENSORPIPE_DATA_DIR: data.path, SENSORPIPE_LOG_LEVEL: 'info' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      children.add(child);
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      let stdout = '';
      let stderr = '';
      child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      await waitFor(() => {
        if (child.exitCode !== null) throw new Error(`exited ${child.exitCode}: ${stderr.slice(-3000)}`);
        return stdout.includes('Ctrl-C stops everything');
      }, 'the compiled sensorpipe start to be running', 30_000);
      const dashboard = /dashboard\s+(http:\/\/\S+)/.exec(stdout)?.[1];
      expect(dashboard, stdout).toBeDefined();
      const page = await fetch(dashboard!);
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('app.js');
      const script = await fetch(new URL('app.js', dashboard));
      expect(script.status).toBe(200);
      expect((await script.text()).length).toBeGreaterThan(10_000);
      // The demo fleet's readings reach the store through the compiled broker and ingest.
      await waitFor(async () => {
        const body = (await (await fetch(new URL('api/devices', dashboard))).json()) as { online?: number };
        return (body.online ?? 0) > 0;
      }, 'a demo device online', 15_000);
      child.kill('SIGINT');
      expect(await exited).toBe(0);
      children.delete(child);
    }, 60_000);
  });

  it('is what cli/bin.js runs only while it is newer than every source of the product', async () => {
    const stamp = join(outDir, 'package.json');
    const future = new Date(Date.now() + 24 * 3600_000);
    await utimes(stamp, future, future);
    expect(currentCompiledEntry(outDir)).toBe(join(outDir, 'cli', 'main.js'));
    // As if every source had been edited after the build: tsx runs them instead.
    await utimes(stamp, new Date(0), new Date(0));
    expect(currentCompiledEntry(outDir)).toBeUndefined();
    // No build at all (a fresh clone).
    expect(currentCompiledEntry(join(outDir, 'missing'))).toBeUndefined();
  });
});

/**
 * `npm run build`: the product compiled to JavaScript, so `npm start`, `npx sensorpipe` (cli/bin.js) and
 * the Docker image run it with plain Node, without tsx. tsc (tsconfig.build.json) compiles core/, store/,
 * the components, admin/ and cli/ into dist/, mirroring the source tree; the dashboard is bundled into
 * dist/display/web/dist, where the compiled display looks for it (display/index.ts's DASHBOARD_DIR);
 * dist/package.json, written last, marks the build finished (cli/compiled.js).
 *
 *   tsx build.ts [--out-dir DIR] [--if-stale]
 *
 * DIR (default dist) must lie inside this folder, where Node finds node_modules. --if-stale does nothing
 * when the build there is newer than every product source: `npm start` runs it first, so the README's
 * `npm install && npm start` builds once and then runs the compiled output (and should the build fail,
 * cli/bin.js runs the sources through tsx as before).
 */
import { spawnSync } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { BUILD_STAMP, currentCompiledEntry, PRODUCT_FOLDERS, ROOT } from './cli/compiled.js';
import { buildDashboard } from './display/web/build.ts';

const { values } = parseArgs({ options: { 'out-dir': { type: 'string', default: 'dist' }, 'if-stale': { type: 'boolean', default: false } } });
const outDir = resolve(ROOT, values['out-dir']);
const inside = relative(ROOT, outDir);
if (inside === '' || inside.startsWith('..') || isAbsolute(inside) || PRODUCT_FOLDERS.includes(inside.split(/[\\/]/)[0]!)) {
  process.stderr.write(`build: --out-dir ${outDir} must be a folder of its own inside ${ROOT} (where node_modules is), outside the sources\n`);
  process.exit(2);
}

if (values['if-stale'] && currentCompiledEntry(outDir) !== undefined) process.exit(0);

const started = Date.now();
// Nothing of an older build may linger: a module deleted from the sources must not stay importable.
await rm(outDir, { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const compiled = spawnSync(process.execPath, [tsc, '-p', join(ROOT, 'tsconfig.build.json'), '--outDir', outDir], { stdio: 'inherit' });
if (compiled.status !== 0) {
  // No half a build left behind: cli/bin.js then runs the sources through tsx, as without a build.
  await rm(outDir, { recursive: true, force: true });
  process.stderr.write(`build: tsc failed (exit ${compiled.status ?? compiled.signal}); no build in ${relative(ROOT, outDir)}/\n`);
  process.exit(1);
}
await buildDashboard(join(outDir, 'display', 'web', 'dist'));
// ES modules, as in the sources (the root package.json says so too, but it is not the nearest one to a
// build whose path runs through node_modules/). No name: `sensorpipe --version` reads the root one.
await writeFile(join(outDir, BUILD_STAMP), `${JSON.stringify({ type: 'module', private: true })}\n`);
process.stdout.write(`build: ${relative(ROOT, outDir)}/ in ${((Date.now() - started) / 1000).toFixed(1)} s (run: node ${relative(ROOT, join(outDir, 'cli', 'main.js'))})\n`);

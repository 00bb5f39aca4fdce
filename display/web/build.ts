/**
 * Builds the dashboard: bundles src/main.ts (with uPlot) into dist/app.js and src/style.css (with
 * uPlot's stylesheet) into dist/app.css, minified, with source maps, and copies index.html. Everything
 * the page needs ends up in dist/, so the dashboard works offline. Run by `npm run build:web`, and by
 * `prepare` on every npm install / npm ci; the display server serves dist/.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';

const WEB_DIR = dirname(fileURLToPath(import.meta.url));
export const DIST_DIR = join(WEB_DIR, 'dist');

export interface BundleFile {
  file: string;
  bytes: number;
  gzipBytes: number;
}

/**
 * Builds into `outdir`, replacing each file atomically (write, then rename): a display starting while a
 * build runs (a test, a second terminal) reads the old file or the new one, never half of one.
 */
export async function buildDashboard(outdir: string = DIST_DIR): Promise<BundleFile[]> {
  await mkdir(outdir, { recursive: true });
  const result = await build({
    entryPoints: [
      { in: join(WEB_DIR, 'src/main.ts'), out: 'app' },
      { in: join(WEB_DIR, 'src/style.css'), out: 'app' },
    ],
    outdir,
    bundle: true,
    minify: true,
    sourcemap: true,
    format: 'esm',
    // Browsers of the last few years; keeps esbuild from rewriting modern syntax into longer code.
    target: ['chrome109', 'firefox115', 'safari15.6', 'edge109'],
    legalComments: 'eof',
    logLevel: 'warning',
    write: false,
  });
  const files = [...result.outputFiles.map((f) => ({ path: f.path, contents: f.contents })), { path: join(outdir, 'index.html'), contents: await readFile(join(WEB_DIR, 'index.html')) }];
  await Promise.all(
    files.map(async ({ path, contents }) => {
      const partial = `${path}.${process.pid}.partial`;
      await writeFile(partial, contents);
      await rename(partial, path);
    }),
  );
  return ['app.js', 'app.css', 'index.html'].map((name) => {
    const contents = files.find((f) => f.path === join(outdir, name))?.contents ?? new Uint8Array();
    return { file: name, bytes: contents.length, gzipBytes: gzipSync(contents, { level: 9 }).length };
  });
}

const kb = (bytes: number) => `${(bytes / 1024).toFixed(1)} KB`;

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const files = await buildDashboard();
  for (const f of files) process.stdout.write(`display/web/dist/${f.file.padEnd(10)} ${kb(f.bytes).padStart(9)}  (gzip ${kb(f.gzipBytes)})\n`);
}

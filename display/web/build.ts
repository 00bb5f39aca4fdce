/**
 * Builds the dashboard: bundles src/main.ts (with uPlot) into dist/app.js and src/style.css (with
 * uPlot's stylesheet) into dist/app.css, minified, with source maps, and copies index.html. Everything
 * the page needs ends up in dist/, so the dashboard works offline. Run by `npm run build:web`, and by
 * `prepare` on every npm install / npm ci; the display server serves dist/.
 */
import { copyFile, mkdir, readFile, rm } from 'node:fs/promises';
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

export async function buildDashboard(outdir: string = DIST_DIR): Promise<BundleFile[]> {
  await rm(outdir, { recursive: true, force: true });
  await mkdir(outdir, { recursive: true });
  await build({
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
  });
  await copyFile(join(WEB_DIR, 'index.html'), join(outdir, 'index.html'));
  return Promise.all(
    ['app.js', 'app.css', 'index.html'].map(async (name) => {
      const content = await readFile(join(outdir, name));
      return { file: name, bytes: content.length, gzipBytes: gzipSync(content, { level: 9 }).length };
    }),
  );
}

const kb = (bytes: number) => `${(bytes / 1024).toFixed(1)} KB`;

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const files = await buildDashboard();
  for (const f of files) process.stdout.write(`display/web/dist/${f.file.padEnd(10)} ${kb(f.bytes).padStart(9)}  (gzip ${kb(f.gzipBytes)})\n`);
}

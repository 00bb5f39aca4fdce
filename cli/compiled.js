// Whether the compiled CLI (`npm run build` → dist/) may be run instead of the TypeScript sources: it may
// when it exists and was built after the last change to any file of the product. Plain JavaScript, as
// cli/bin.js needs it before any TypeScript can be loaded; build.ts uses it for `npm start`'s build-if-stale.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository (or image) root: the folder above cli/. */
export const ROOT = fileURLToPath(new URL('../', import.meta.url));
/** Folders whose files go into the build: what tsconfig.build.json compiles, and the dashboard's sources. */
export const PRODUCT_FOLDERS = ['core', 'store', 'broker', 'firmware-sim', 'ingest', 'display', 'admin', 'cli'];
/** Written last by build.ts, so its time is when the build finished (and a half-done build has none). */
export const BUILD_STAMP = 'package.json';
/** Generated or unrelated to the compiled output; the dashboard's bundle is rebuilt from its sources. */
const SKIPPED = new Set(['node_modules', 'dist']);

/** Newest modification time (ms) of the files under `dir`, or 0 when there are none. */
function newestChange(dir) {
  let newest = 0;
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (!SKIPPED.has(entry.name)) newest = Math.max(newest, newestChange(path));
    } else if (entry.isFile()) {
      newest = Math.max(newest, statSync(path).mtimeMs);
    }
  }
  return newest;
}

/**
 * The compiled CLI's entry (an absolute path) when `outDir` holds a build newer than every product source,
 * else undefined. In an image that ships only the build (no sources), any build is current.
 */
export function currentCompiledEntry(outDir = join(ROOT, 'dist')) {
  let builtAt;
  try {
    builtAt = statSync(join(outDir, BUILD_STAMP)).mtimeMs;
    statSync(join(outDir, 'cli', 'main.js'));
  } catch {
    return undefined;
  }
  for (const folder of PRODUCT_FOLDERS) if (newestChange(join(ROOT, folder)) > builtAt) return undefined;
  return join(outDir, 'cli', 'main.js');
}

#!/usr/bin/env node
// Entry point of the `sensorpipe` command. It runs the compiled CLI (dist/cli/main.js, made by
// `npm run build`) when that build is newer than every source file of the product: no TypeScript loader,
// a faster start and less memory. Otherwise (a fresh clone, or sources edited since the last build) it runs
// the TypeScript sources, cli/main.ts, through tsx's loader, as Node 20 cannot run TypeScript by itself;
// so neither `npm test` nor a fresh clone needs a build step, and an edited source never runs stale.
import { pathToFileURL } from 'node:url';
import { currentCompiledEntry } from './compiled.js';

const compiled = currentCompiledEntry();
if (compiled !== undefined) {
  await import(pathToFileURL(compiled).href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('./main.ts');
}

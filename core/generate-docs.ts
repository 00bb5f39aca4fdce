/**
 * Regenerates the documents derived from code: core/schema/*.json, the test vectors in PROTOCOL.md and
 * the error-code table in docs/ERRORS.md. `npm run docs:gen`; tests fail while any of them is stale.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { describeErrorCodes } from './errors.ts';
import { writeJsonSchemas } from './json-schema.ts';
import { generateVectors, vectorsBlock, VECTORS_BEGIN, VECTORS_END } from './vectors.ts';

export const CODES_BEGIN = '<!-- codes:begin -->';
export const CODES_END = '<!-- codes:end -->';

async function replaceBlock(path: URL, begin: string, end: string, block: string): Promise<void> {
  const doc = await readFile(path, 'utf8');
  const start = doc.indexOf(begin);
  const stop = doc.indexOf(end);
  if (start < 0 || stop < start) throw new Error(`${path.pathname} has no ${begin} … ${end} block`);
  await writeFile(path, doc.slice(0, start) + block + doc.slice(stop + end.length));
}

await writeJsonSchemas();
await replaceBlock(new URL('./PROTOCOL.md', import.meta.url), VECTORS_BEGIN, VECTORS_END, vectorsBlock(generateVectors()));
await replaceBlock(new URL('../docs/ERRORS.md', import.meta.url), CODES_BEGIN, CODES_END, `${CODES_BEGIN}\n${describeErrorCodes()}\n${CODES_END}`);

/**
 * What the generated API descriptions share (admin/openapi.ts, display/openapi.ts, core/asyncapi.ts):
 * zod schemas turned into JSON Schema with their named parts moved to `components.schemas`, error
 * answers grouped by the HTTP status of their codes (core/errors.ts), the one error body, and the
 * "generated file is current" check that keeps each checked-in document equal to what its code makes.
 *
 * OpenAPI 3.1's schema dialect is JSON Schema 2020-12; AsyncAPI 3.0's default schema format is a
 * superset of draft-07. zod's toJSONSchema writes either, so the same schemas serve both documents.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { ERROR_CODES, type ErrorCode } from './errors.ts';

export type JsonObject = Record<string, unknown>;

/** Every error of every HTTP answer: what core/errors.ts's SensorpipeError.toJSON writes. */
export const ErrorBodySchema = z
  .strictObject({
    // A pattern, not the list: a code added to core/errors.ts must not make this description stale.
    code: z.string().regex(/^[A-Z][A-Z0-9_]*$/).meta({ description: 'A stable code from docs/ERRORS.md (core/errors.ts).' }),
    message: z.string(),
    details: z.record(z.string(), z.unknown()).optional(),
  })
  .meta({ id: 'Error', description: 'Every error: a stable code (docs/ERRORS.md) and a message for people.' });

export interface SchemaOptions {
  /** JSON Schema dialect: 2020-12 for OpenAPI 3.1, draft-07 for AsyncAPI 3.0. */
  target?: 'draft-2020-12' | 'draft-07';
  /** `input` for what a client sends (before transforms: query parameters, frames), `output` for answers. */
  io?: 'input' | 'output';
  /** Ids for schemas that have no `.meta({ id })` of their own: each becomes one entry of components.schemas. */
  names?: z.core.$ZodRegistry<{ id?: string }>;
}

/**
 * A schema as JSON Schema whose named parts (zod meta ids, or ids given in `names`) are references into
 * components.schemas; those parts are added to `components`. Refinements that JSON Schema cannot
 * express (a reserved name, an order) are left out: the zod schema stays the one that decides.
 */
export function schemaRef(schema: z.ZodType, components: JsonObject, options: SchemaOptions = {}): JsonObject {
  const target = options.target ?? 'draft-2020-12';
  const json = z.toJSONSchema(schema, { target, io: options.io ?? 'output', unrepresentable: 'any', ...(options.names === undefined ? {} : { metadata: options.names }) });
  const text = JSON.stringify(json).replaceAll('"#/$defs/', '"#/components/schemas/').replaceAll('"#/definitions/', '"#/components/schemas/');
  const { $schema: _dialect, $defs, definitions, ...root } = JSON.parse(text) as JsonObject & { $defs?: JsonObject; definitions?: JsonObject };
  Object.assign(components, $defs ?? {}, definitions ?? {});
  return root;
}

/** Headers an error answer carries besides its body, by HTTP status. */
export type HeadersByStatus = Partial<Record<number, JsonObject>>;

/**
 * OpenAPI responses for `codes`, one per HTTP status (core/errors.ts maps each code to one), each
 * naming its codes and their meaning, with the error body and the headers `headers` gives its status.
 */
export function errorResponses(codes: readonly ErrorCode[], components: JsonObject, headers: HeadersByStatus = {}): JsonObject {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of new Set(codes)) byStatus.set(ERROR_CODES[code].http, [...(byStatus.get(ERROR_CODES[code].http) ?? []), code]);
  const errorRef = schemaRef(ErrorBodySchema, components);
  return Object.fromEntries(
    [...byStatus.entries()]
      .sort(([a], [b]) => a - b)
      .map(([status, list]) => [
        String(status),
        {
          description: `${list.map((code) => `\`${code}\``).join(', ')}: ${list.map((code) => ERROR_CODES[code].text).join(' ')}`,
          ...(headers[status] === undefined ? {} : { headers: headers[status] }),
          content: { 'application/json': { schema: errorRef } },
        },
      ]),
  );
}

/** A generated document as it is written to its file. */
export const documentText = (document: JsonObject): string => `${JSON.stringify(document, null, 2)}\n`;

/** True when the file at `path` holds exactly `text` (a checked-in document is what its code generates now). */
export async function generatedFileCurrent(path: string, text: string): Promise<boolean> {
  return (await readFile(path, 'utf8').catch(() => '')) === text;
}

/** Writes `text` to `path` when the module `moduleUrl` is the script run with `--write` (`npx tsx <module> --write`). */
export async function writeWhenRun(moduleUrl: string, path: string, text: () => string): Promise<void> {
  if (process.argv[1] === fileURLToPath(moduleUrl) && process.argv.includes('--write')) {
    await writeFile(path, text());
    process.stdout.write(`wrote ${path}\n`);
  }
}

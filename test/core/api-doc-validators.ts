/**
 * Real validators for the generated API descriptions: @seriousme/openapi-schema-validator (the OpenAPI
 * 3.1 schema, and every $ref resolved) and AsyncAPI's own 3.0.0 JSON Schema (@asyncapi/specs) run by
 * ajv 8; plus `resolvesAll`, the check that every $ref of a document names something inside it, which
 * the AsyncAPI schema alone does not make. @asyncapi/parser would do both for AsyncAPI but brings ~55 MB
 * and 137 packages; these bring ~12 MB.
 */
import { createRequire } from 'node:module';
import { Validator } from '@seriousme/openapi-schema-validator';
import { Ajv, type ValidateFunction } from 'ajv';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule, { type FormatsPlugin } from 'ajv-formats';

// ajv-formats is CommonJS with `exports.default`: TypeScript (NodeNext) sees the module object, Node's
// ESM loader may hand over either; take the plugin from whichever it is.
const addFormats: FormatsPlugin = (addFormatsModule as unknown as { default?: FormatsPlugin }).default ?? (addFormatsModule as unknown as FormatsPlugin);

type Json = Record<string, unknown>;

export async function validateOpenApi(document: Json): Promise<{ valid: boolean; errors: unknown }> {
  const result = await new Validator().validate(structuredClone(document));
  return { valid: result.valid, errors: result.errors };
}

let asyncApiSchema: ValidateFunction | undefined;

/** AsyncAPI 3.0.0's JSON Schema, as @asyncapi/parser loads it: without the JSON Schema meta-schemas it embeds (ajv has draft-07 already). */
export function validateAsyncApi(document: Json): { valid: boolean; errors: unknown } {
  if (asyncApiSchema === undefined) {
    const schema = structuredClone(createRequire(import.meta.url)('@asyncapi/specs/schemas/3.0.0.json') as { definitions: Json });
    delete schema.definitions['http://json-schema.org/draft-07/schema'];
    delete schema.definitions['http://json-schema.org/draft-04/schema'];
    const ajv = new Ajv({ allErrors: true, strict: false });
    addFormats(ajv);
    asyncApiSchema = ajv.compile(schema);
  }
  const valid = asyncApiSchema(document);
  return { valid, errors: asyncApiSchema.errors?.slice(0, 5) };
}

/** The value a local JSON pointer (`#/a/b`) names in `document`, or undefined. */
export function resolvePointer(document: unknown, ref: string): unknown {
  if (!ref.startsWith('#/')) return undefined;
  let node: unknown = document;
  for (const raw of ref.slice(2).split('/')) {
    const token = decodeURIComponent(raw).replaceAll('~1', '/').replaceAll('~0', '~');
    if (typeof node !== 'object' || node === null || !Object.hasOwn(node, token)) return undefined;
    node = (node as Json)[token];
  }
  return node;
}

/** Every `$ref` of the document that does not name something inside it. */
export function unresolvedRefs(document: unknown): string[] {
  const refs = [...JSON.stringify(document).matchAll(/"\$ref":"([^"]+)"/g)].map((m) => m[1]!);
  return refs.filter((ref) => resolvePointer(document, ref) === undefined);
}

/**
 * A validator for the JSON Schema at `pointer` in an API description (an answer's or a message's
 * schema), its references into `components.schemas` resolved. `dialect`: 2020-12 for OpenAPI 3.1,
 * draft-07 for AsyncAPI 3.0.
 */
export function schemaValidator(document: Json, pointer: string, dialect: '2020-12' | 'draft-07'): ValidateFunction {
  const schema = resolvePointer(document, pointer);
  if (schema === undefined) throw new Error(`nothing at ${pointer}`);
  const defs = (document.components as Json).schemas as Json;
  const key = dialect === '2020-12' ? '$defs' : 'definitions';
  const text = JSON.stringify({ ...(schema as Json), [key]: defs }).replaceAll('"#/components/schemas/', `"#/${key}/`);
  const ajv = dialect === '2020-12' ? new Ajv2020({ allErrors: true, strict: false }) : new Ajv({ allErrors: true, strict: false });
  addFormats(ajv);
  return ajv.compile(JSON.parse(text) as Json);
}

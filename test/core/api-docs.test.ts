/**
 * core/api-docs.ts, what the generated API descriptions share: zod schemas become JSON Schema with their
 * named parts moved to components.schemas (2020-12 for OpenAPI, draft-07 for AsyncAPI), error answers
 * are grouped by the HTTP status of their codes, and the admin API's description, built with them too,
 * passes the real OpenAPI 3.1 validator.
 */
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { adminOpenApi } from '../../admin/openapi.ts';
import { ErrorBodySchema, errorResponses, schemaRef } from '../../core/api-docs.ts';
import { SensorpipeError } from '../../core/errors.ts';
import { validateOpenApi } from './api-doc-validators.ts';

const Part = z.strictObject({ a: z.string() }).meta({ id: 'Part' });
const Whole = z.strictObject({ x: Part, y: z.array(Part) });

describe('schemaRef', () => {
  it.each(['draft-2020-12', 'draft-07'] as const)('%s: named parts become references into components.schemas, with no dialect left', (target) => {
    const components: Record<string, unknown> = {};
    const json = schemaRef(Whole, components, { target });
    expect(json).not.toHaveProperty('$schema');
    expect(json).not.toHaveProperty('$defs');
    expect(json).not.toHaveProperty('definitions');
    expect((json.properties as Record<string, unknown>).x).toEqual({ $ref: '#/components/schemas/Part' });
    expect(components).toEqual({ Part: { type: 'object', properties: { a: { type: 'string' } }, required: ['a'], additionalProperties: false } });
  });

  it('io input describes what a client sends (before transforms), output what it is turned into', () => {
    const Count = z.strictObject({ n: z.string().transform(Number).pipe(z.number().int()) });
    expect((schemaRef(Count, {}, { io: 'input' }).properties as Record<string, { type: string }>).n?.type).toBe('string');
    expect((schemaRef(Count, {}, { io: 'output' }).properties as Record<string, { type: string }>).n?.type).toBe('integer');
  });

  it('names: an id for a schema that has none of its own', () => {
    const names = z.registry<{ id?: string }>();
    const Anonymous = z.strictObject({ b: z.number() });
    names.add(Anonymous, { id: 'Named' });
    const components: Record<string, unknown> = {};
    expect(schemaRef(z.strictObject({ one: Anonymous }), components, { names }).properties).toEqual({ one: { $ref: '#/components/schemas/Named' } });
    expect(components).toHaveProperty('Named');
  });
});

describe('errorResponses', () => {
  it('one response per status, naming its codes and their text, with the error body and the headers of its status', () => {
    const components: Record<string, unknown> = {};
    const responses = errorResponses(['QUERY_INVALID', 'QUERY_RANGE_INVALID', 'NOT_FOUND', 'QUERY_INVALID', 'SERVER_BUSY'], components, { 503: { 'Retry-After': { schema: { type: 'integer' } } } }) as Record<string, { description: string; headers?: unknown }>;
    expect(Object.keys(responses)).toEqual(['400', '404', '503']);
    expect(responses['400']!.description).toMatch(/^`QUERY_INVALID`, `QUERY_RANGE_INVALID`: /);
    expect(responses['503']!.headers).toHaveProperty('Retry-After');
    expect(responses['404']!.headers).toBeUndefined();
    expect(components).toHaveProperty('Error');
  });

  it('the error body is what SensorpipeError writes', () => {
    expect(ErrorBodySchema.safeParse(new SensorpipeError('NOT_FOUND', 'no').toJSON()).success).toBe(true);
    expect(ErrorBodySchema.safeParse(new SensorpipeError('QUERY_INVALID', 'bad', { param: 'from' }).toJSON()).success).toBe(true);
    expect(ErrorBodySchema.safeParse({ code: 'lower', message: 'x' }).success).toBe(false);
  });
});

describe('the admin API description (built with these helpers)', () => {
  it('is a valid OpenAPI 3.1 document', async () => {
    const result = await validateOpenApi(adminOpenApi());
    expect(result.valid, JSON.stringify(result.errors)).toBe(true);
  });
});

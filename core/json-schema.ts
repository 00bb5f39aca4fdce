/**
 * JSON Schemas of the protocol messages, generated from the zod schemas (the source of truth) into
 * core/schema/. `npm run docs:gen` writes them; the test suite checks that the files are current.
 */
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { StatusMessageSchema, TelemetryMessageSchema, VerifiedReadingsSchema } from './schemas.ts';

const SCHEMA_DIR = fileURLToPath(new URL('./schema/', import.meta.url));

const messages = {
  'telemetry.schema.json': { schema: TelemetryMessageSchema, title: 'sensorpipe telemetry message (v1), topic sensors/{device}/telemetry' },
  'status.schema.json': { schema: StatusMessageSchema, title: 'sensorpipe device status (v1), topic sensors/{device}/status, retained' },
  'verified-readings.schema.json': { schema: VerifiedReadingsSchema, title: 'sensorpipe verified readings (v1), topic pipeline/readings/{device}' },
};

export function jsonSchemas(): Record<string, string> {
  const files: Record<string, string> = {};
  for (const [file, { schema, title }] of Object.entries(messages)) {
    // Refinements (metric count, seq order, reserved names) cannot be expressed in JSON Schema; the
    // document says so and PROTOCOL.md lists them.
    const json = z.toJSONSchema(schema, { target: 'draft-2020-12', unrepresentable: 'any' });
    files[file] = `${JSON.stringify({ title, ...json }, null, 2)}\n`;
  }
  return files;
}

export async function writeJsonSchemas(): Promise<void> {
  await mkdir(SCHEMA_DIR, { recursive: true });
  for (const [file, text] of Object.entries(jsonSchemas())) await writeFile(`${SCHEMA_DIR}${file}`, text);
}

export async function staleJsonSchemas(): Promise<string[]> {
  const stale: string[] = [];
  for (const [file, text] of Object.entries(jsonSchemas())) {
    const current = await readFile(`${SCHEMA_DIR}${file}`, 'utf8').catch(() => '');
    if (current !== text) stale.push(file);
  }
  return stale;
}


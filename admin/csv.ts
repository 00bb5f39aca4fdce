/**
 * CSV in and out for bulk provisioning (RFC 4180: comma-separated, fields with a comma, quote or line
 * break in double quotes, a quote inside doubled; CRLF or LF line ends). In: a header row naming the
 * columns id, alg, trust, payload, site, model, profile (id required, any order), one device per row;
 * `payload` is a mapping's name (flat-json, tasmota, shelly-gen2) or its JSON. Out: the credentials
 * file of a bulk add.
 */
import { SensorpipeError } from '../core/errors.ts';
import type { IssuedCredentials } from '../core/registry.ts';
import type { BulkInput } from './devices.ts';
import { decodeStrictJson } from './input.ts';

export const CSV_COLUMNS = ['id', 'alg', 'trust', 'payload', 'site', 'model', 'profile'] as const;

/** Splits CSV text into rows of fields; DEVICE_INVALID on an unterminated quote or text after one. */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false; // the current field was written in quotes (so `""` is a field, not a blank line)
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0; // a byte-order mark, as spreadsheets write one
  let line = 1;
  const endField = () => {
    row.push(field);
    field = '';
  };
  const endRow = () => {
    const blank = row.length === 0 && field === '' && !quoted;
    endField();
    if (!blank) rows.push(row);
    row = [];
    quoted = false;
    line++;
  };
  while (i < text.length) {
    const c = text[i]!;
    if (c === '"' && field === '' && !quoted) {
      // A quoted field: up to the closing quote; "" inside is a quote.
      quoted = true;
      i++;
      for (;;) {
        if (i >= text.length) throw new SensorpipeError('DEVICE_INVALID', `CSV line ${line}: a quoted field is not closed`);
        const q = text[i]!;
        if (q === '"' && text[i + 1] === '"') {
          field += '"';
          i += 2;
        } else if (q === '"') {
          i++;
          break;
        } else {
          if (q === '\n') line++;
          field += q;
          i++;
        }
      }
      const next = text[i];
      if (next !== undefined && next !== ',' && next !== '\n' && next !== '\r') throw new SensorpipeError('DEVICE_INVALID', `CSV line ${line}: text after a closing quote`);
    } else if (c === ',') {
      endField();
      quoted = false;
      i++;
    } else if (c === '\r' || c === '\n') {
      endRow();
      i += c === '\r' && text[i + 1] === '\n' ? 2 : 1;
    } else {
      field += c;
      i++;
    }
  }
  if (field !== '' || quoted || row.length > 0) endRow();
  return rows;
}

/** A bulk file in CSV → the devices it lists, each row labelled with its line for error messages. */
export function devicesFromCsv(text: string): BulkInput {
  const rows = parseCsv(text);
  const [header, ...body] = rows;
  if (header === undefined) throw new SensorpipeError('DEVICE_INVALID', 'the CSV file is empty: it needs a header row (id,alg,trust,payload,site,model,profile) and one row per device');
  const columns = header.map((name) => name.trim().toLowerCase());
  for (const [index, name] of columns.entries()) {
    if (!(CSV_COLUMNS as readonly string[]).includes(name)) throw new SensorpipeError('DEVICE_INVALID', `CSV header: unknown column ${JSON.stringify(name.slice(0, 40))} (columns: ${CSV_COLUMNS.join(', ')})`);
    if (columns.indexOf(name) !== index) throw new SensorpipeError('DEVICE_INVALID', `CSV header: column ${name} is given twice`);
  }
  if (!columns.includes('id')) throw new SensorpipeError('DEVICE_INVALID', 'CSV header: the id column is required');
  const devices = body.map((cells, index) => {
    if (cells.length !== columns.length) throw new SensorpipeError('DEVICE_INVALID', `nothing was added: CSV row ${index + 2} has ${cells.length} field(s); the header has ${columns.length}`);
    // An empty cell is an unset field; built with a Map so a column name can never reach a prototype.
    const row: Record<string, unknown> = Object.fromEntries(new Map(columns.map((name, i) => [name, cells[i]!] as const).filter(([, value]) => value !== '')));
    if (typeof row.payload === 'string') row.payload = payloadCell(row.payload, index);
    return row;
  });
  return { devices, rowLabel: (index) => `CSV row ${index + 2}` };
}

/** A payload mapping in a CSV cell: a format's name, or the mapping as JSON (read strictly). */
function payloadCell(cell: string, index: number): unknown {
  if (!cell.trimStart().startsWith('{')) return { format: cell.trim() };
  try {
    return decodeStrictJson(Buffer.from(cell, 'utf8'), 64 * 1024);
  } catch (err) {
    throw new SensorpipeError('DEVICE_INVALID', `nothing was added: CSV row ${index + 2}: payload: ${(err as Error).message}`);
  }
}

const csvField = (value: string): string => (/[",\r\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value);

/** The credentials of a bulk add as CSV: one row per device, the secrets in the clear (keep the file safe). */
export function credentialsCsv(all: readonly IssuedCredentials[]): string {
  const lines = ['device_id,mqtt_username,mqtt_password,alg,signing_key,public_key'];
  for (const c of all) {
    if (!('signing' in c)) {
      lines.push([c.deviceId, c.deviceId, c.mqttPassword, 'none', '', ''].map(csvField).join(','));
      continue;
    }
    const key = c.signing.alg === 'hmac-sha256' ? c.signing.key : c.signing.privateKey;
    const publicKey = c.signing.alg === 'ed25519' ? c.signing.publicKey : '';
    lines.push([c.deviceId, c.deviceId, c.mqttPassword, c.signing.alg, key, publicKey].map(csvField).join(','));
  }
  return `${lines.join('\r\n')}\r\n`;
}

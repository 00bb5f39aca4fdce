/**
 * One HTTP request over node:http, for the display's API tests that check what fetch() hides: the body
 * as it came over the wire (still gzip-compressed if it was: fetch decompresses by itself and picks its
 * own Accept-Encoding), any method (OPTIONS, PROPFIND) and any header (Origin, Accept-Encoding garbage).
 */
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { gunzipSync } from 'node:zlib';

export interface RawAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  /** The body as it came over the wire (still compressed if it was). */
  raw: Buffer;
}

/** `method path` to 127.0.0.1:`port`, with exactly `headers` (node:http adds only Host and Connection). */
export function sendRaw(port: number, method: string, path: string, headers: Record<string, string> = {}): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, raw: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** The body's text, decompressed when the answer says gzip. */
export function bodyText(answer: RawAnswer): string {
  return (answer.headers['content-encoding'] === 'gzip' ? gunzipSync(answer.raw) : answer.raw).toString('utf8');
}

export function bodyJson(answer: RawAnswer): Record<string, unknown> {
  return JSON.parse(bodyText(answer)) as Record<string, unknown>;
}

/** A real admin API listener on a free loopback port, its log kept as text, and a small HTTP client for it. */
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { DeviceService } from '../../admin/devices.ts';
import { startAdminServer, type AdminServerOptions, type RunningAdmin } from '../../admin/http.ts';
import { createLogger } from '../../core/logger.ts';
import { openRegistryStore, type RegistryStore } from '../../core/registry-store.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';

export const TOKEN = 'test-admin-token-0123456789abcdef';

export interface TestAdmin {
  admin: RunningAdmin;
  store: RegistryStore;
  registryPath: string;
  /** Everything the admin API logged so far, as written (JSON lines). */
  logText(): string;
  logLines(): Record<string, unknown>[];
  call(method: string, path: string, options?: CallOptions): Promise<Reply>;
  close(): Promise<void>;
}

export interface CallOptions {
  /** A string or bytes sent as is; anything else as JSON. */
  body?: unknown;
  contentType?: string | null;
  /** The bearer token; null: no Authorization header. */
  token?: string | null;
  headers?: Record<string, string>;
}

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: () => any; // eslint-disable-line @typescript-eslint/no-explicit-any -- test convenience
}

export async function startTestAdmin(options: { registryPath?: string; dir?: TempDir; server?: Partial<AdminServerOptions> } = {}): Promise<TestAdmin & { dir: TempDir | undefined }> {
  const dir = options.registryPath === undefined ? (options.dir ?? (await tempDir('sensorpipe-admin-'))) : undefined;
  const registryPath = options.registryPath ?? join(dir!.path, 'registry.json');
  let log = '';
  const logger = createLogger({
    level: 'debug',
    destination: new Writable({
      write(chunk: Buffer, _encoding, callback) {
        log += chunk.toString();
        callback();
      },
    }),
  });
  const store = openRegistryStore({ registryPath });
  const admin = await startAdminServer({
    service: new DeviceService(store),
    token: TOKEN,
    host: '127.0.0.1',
    port: 0,
    logger,
    maxBodyBytes: 64 * 1024,
    authFailures: 1000,
    authBanMs: 60_000,
    authFailureDelayMaxMs: 20,
    ...options.server,
  });
  return {
    admin,
    store,
    dir,
    registryPath,
    logText: () => log,
    logLines: () => log.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>),
    call: (method, path, callOptions) => call(admin.port, method, path, callOptions),
    async close() {
      await admin.close();
      await store.close();
      await dir?.remove();
    },
  };
}

/** One HTTP request with node:http (fetch refuses some of what a hostile client sends, e.g. a GET with a body). */
export function call(port: number, method: string, path: string, options: CallOptions = {}): Promise<Reply> {
  const token = options.token === undefined ? TOKEN : options.token;
  let body: Buffer | undefined;
  let contentType: string | null | undefined = options.contentType;
  if (options.body !== undefined) {
    if (typeof options.body === 'string' || Buffer.isBuffer(options.body)) body = Buffer.from(options.body);
    else {
      body = Buffer.from(JSON.stringify(options.body));
      contentType ??= 'application/json';
    }
  }
  const headers: Record<string, string> = { ...options.headers };
  if (token !== null) headers.authorization = `Bearer ${token}`;
  if (contentType) headers['content-type'] = contentType;
  if (body !== undefined) headers['content-length'] = String(body.length);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: () => JSON.parse(text) });
      });
      res.on('error', reject);
    });
    // A server that answers before reading the whole body may close the socket while it is written.
    req.on('error', reject);
    req.end(body);
  });
}

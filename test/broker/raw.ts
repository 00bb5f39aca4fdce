/**
 * Hand-made MQTT bytes on a raw socket, for the cases a well-behaved client library will not produce:
 * a wrong first packet, a huge announced length, MQTT 5, a CONNECT trickled a byte at a time.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { remainingLength } from '../../harness/mqtt-bytes.ts';

function utf8Field(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  const length = Buffer.alloc(2);
  length.writeUInt16BE(bytes.length);
  return Buffer.concat([length, bytes]);
}

export { remainingLength };

export function connectPacket(options: { clientId: string; username?: string; password?: string; keepalive?: number; version?: 4 | 5; clean?: boolean }): Buffer {
  const version = options.version ?? 4;
  let flags = options.clean === false ? 0 : 0x02;
  if (options.username !== undefined) flags |= 0x80;
  if (options.password !== undefined) flags |= 0x40;
  const keepalive = Buffer.alloc(2);
  keepalive.writeUInt16BE(options.keepalive ?? 60);
  const variable = Buffer.concat([utf8Field('MQTT'), Buffer.from([version, flags]), keepalive, version === 5 ? Buffer.from([0]) : Buffer.alloc(0)]);
  const payload = Buffer.concat([
    utf8Field(options.clientId),
    options.username !== undefined ? utf8Field(options.username) : Buffer.alloc(0),
    options.password !== undefined ? utf8Field(options.password) : Buffer.alloc(0),
  ]);
  const body = Buffer.concat([variable, payload]);
  return Buffer.concat([Buffer.from([0x10]), remainingLength(body.length), body]);
}

export const PINGREQ = Buffer.from([0xc0, 0x00]);

export interface RawConnection {
  socket: Socket;
  /** Everything the broker sent so far. */
  received(): Buffer;
  /** Resolves once the broker closed the connection. */
  closed: Promise<void>;
  /** Resolves with the first `n` bytes the broker sends. */
  bytes(n: number, timeoutMs?: number): Promise<Buffer>;
}

export function rawConnect(port: number, localAddress = '127.0.0.1'): Promise<RawConnection> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ port, host: '127.0.0.1', localAddress });
    let data = Buffer.alloc(0);
    const listeners: (() => void)[] = [];
    socket.on('data', (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      for (const l of listeners.splice(0)) l();
    });
    socket.on('error', () => {});
    const closed = new Promise<void>((done) => socket.once('close', () => {
      done();
      for (const l of listeners.splice(0)) l();
    }));
    socket.once('connect', () =>
      resolve({
        socket,
        received: () => data,
        closed,
        bytes(n, timeoutMs = 20_000) {
          return new Promise((ok, fail) => {
            const timer = setTimeout(() => fail(new Error(`no ${n} bytes from the broker`)), timeoutMs);
            const check = () => {
              if (data.length >= n) {
                clearTimeout(timer);
                ok(data.subarray(0, n));
              } else if (socket.destroyed) {
                clearTimeout(timer);
                fail(new Error(`connection closed after ${data.length} bytes`));
              } else listeners.push(check);
            };
            check();
          });
        },
      }),
    );
    socket.once('error', reject);
  });
}

/** Waits for `promise`, failing with `what` after timeoutMs (the broker must act; generous under load). */
export function within<T>(promise: Promise<T>, what: string, timeoutMs = 20_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), timeoutMs);
    promise.then((v) => { clearTimeout(timer); resolve(v); }, (e: unknown) => { clearTimeout(timer); reject(e as Error); });
  });
}

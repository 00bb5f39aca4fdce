/**
 * A duplex stream between a socket and aedes that reads the MQTT fixed header of every packet as the
 * bytes arrive and closes the connection as soon as a header announces a packet larger than the limit,
 * or the first packet is not a CONNECT ([MQTT-3.1.0-1]). aedes 1.2 has no maximum packet size and would
 * otherwise buffer a 200 MiB packet whole, even before CONNECT; here at most the bytes of one socket read
 * are held. Bytes are passed through unchanged (no copy); only the header bytes are inspected.
 */
import { Duplex } from 'node:stream';

export type GuardViolation = 'packet_too_large' | 'malformed_length' | 'not_connect_first';

export interface GuardedConnection {
  address: string;
  transport: 'tcp' | 'ws' | 'tls';
}

export class PacketGuard extends Duplex {
  /** Bytes of the current packet's body still to pass before the next fixed header. */
  private skip = 0;
  /** Bytes of the fixed header read so far (0: at the start of a packet). */
  private headerBytes = 0;
  private remaining = 0;
  private multiplier = 1;
  private sawConnect = false;
  private violated = false;

  constructor(
    private readonly inner: Duplex,
    private readonly maxPacketBytes: number,
    readonly connection: GuardedConnection,
    private readonly onViolation: (reason: GuardViolation) => void,
  ) {
    super({ allowHalfOpen: false, decodeStrings: false });
    inner.on('data', (chunk: Buffer) => this.onData(chunk));
    inner.on('end', () => this.push(null));
    inner.on('error', (err) => this.destroy(err));
    inner.on('close', () => this.destroy());
  }

  /** aedes logs and reads remoteAddress from its connection in places. */
  get remoteAddress(): string {
    return this.connection.address;
  }

  private onData(chunk: Buffer): void {
    if (this.violated) return;
    const reason = this.inspect(chunk);
    if (reason !== undefined) {
      this.violated = true;
      this.onViolation(reason);
      this.inner.destroy();
      this.destroy();
      return;
    }
    if (!this.push(chunk)) this.inner.pause();
  }

  private inspect(chunk: Buffer): GuardViolation | undefined {
    let i = 0;
    while (i < chunk.length) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - i);
        this.skip -= n;
        i += n;
        continue;
      }
      const byte = chunk[i++]!;
      if (this.headerBytes === 0) {
        const type = byte >> 4;
        if (!this.sawConnect && type !== 1) return 'not_connect_first';
        this.sawConnect = true;
        this.headerBytes = 1;
        this.remaining = 0;
        this.multiplier = 1;
        continue;
      }
      this.remaining += (byte & 0x7f) * this.multiplier;
      this.multiplier *= 128;
      this.headerBytes++;
      if ((byte & 0x80) !== 0) {
        // The remaining length takes at most four bytes [MQTT-2.2.3].
        if (this.headerBytes > 4) return 'malformed_length';
        continue;
      }
      if (this.headerBytes + this.remaining > this.maxPacketBytes) return 'packet_too_large';
      this.skip = this.remaining;
      this.headerBytes = 0;
    }
    return undefined;
  }

  override _read(): void {
    this.inner.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.inner.write(chunk)) callback();
    else this.inner.once('drain', () => callback());
  }

  override _writev(chunks: { chunk: Buffer }[], callback: (error?: Error | null) => void): void {
    let ok = true;
    for (const { chunk } of chunks) ok = this.inner.write(chunk);
    if (ok) callback();
    else this.inner.once('drain', () => callback());
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.inner.end();
    callback();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.inner.destroy();
    callback(err);
  }
}

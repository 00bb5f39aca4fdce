/**
 * Reads the MQTT fixed header of every packet as the bytes arrive from the transport, and closes the
 * connection as soon as a header announces a packet larger than the limit, or the first packet is not
 * a CONNECT ([MQTT-3.1.0-1]). aedes 1.2 has no maximum packet size and would otherwise buffer a 200 MiB
 * packet whole, even before CONNECT; here at most the bytes of one socket read are held.
 *
 * The guard sits inside the stream aedes is given, not in front of it: each chunk the transport pushes
 * (the socket's read, or a WebSocket message) is inspected before it enters the stream's buffer, and
 * passed on unchanged. An earlier version was a Duplex between the socket and aedes: every packet went
 * through two stream layers each way, and its writes reached the socket piece by piece, a system call
 * each; that was most of the 40-50% more CPU time per message the broker spent than a bare aedes.
 * Writes now go from aedes to the socket directly, as in a bare aedes.
 */
import type { Duplex } from 'node:stream';
import type { DropReason } from './codes.ts';

export type GuardViolation = Extract<DropReason, 'packet_too_large' | 'malformed_length' | 'not_connect_first'>;

export interface GuardedConnection {
  address: string;
  transport: 'tcp' | 'ws' | 'tls';
}

/** The fixed-header state machine: fed every byte of a connection, in order, in chunks of any size. */
export class PacketInspector {
  /** Bytes of the current packet's body still to pass before the next fixed header. */
  private skip = 0;
  /** Bytes of the fixed header read so far (0: at the start of a packet). */
  private headerBytes = 0;
  private remaining = 0;
  private multiplier = 1;
  private sawConnect = false;

  constructor(private readonly maxPacketBytes: number) {}

  inspect(chunk: Uint8Array): GuardViolation | undefined {
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
}

/**
 * Guards `stream` in place: every chunk pushed into it (by the socket as it reads, or by the WebSocket
 * stream per message) is inspected first; on a violation the chunk is discarded, `onViolation` is called
 * and the stream destroyed. Node's sockets and ws' stream both deliver incoming bytes through `push`.
 */
export function guardIncoming(stream: Duplex, maxPacketBytes: number, onViolation: (reason: GuardViolation) => void): void {
  const inspector = new PacketInspector(maxPacketBytes);
  const push = stream.push;
  let violated = false;
  stream.push = function guardedPush(this: Duplex, chunk: unknown, encoding?: BufferEncoding): boolean {
    if (violated) return false;
    if (chunk !== null && chunk !== undefined) {
      // Sockets and ws push Buffers; a string (which no transport here pushes) is checked as its bytes.
      const reason = inspector.inspect(typeof chunk === 'string' ? Buffer.from(chunk, encoding) : (chunk as Uint8Array));
      if (reason !== undefined) {
        violated = true;
        onViolation(reason);
        this.destroy();
        return false;
      }
    }
    return push.call(this, chunk, encoding);
  };
}

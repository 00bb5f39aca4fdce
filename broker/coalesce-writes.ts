/**
 * Packets written to a connection during one turn of the event loop leave together, in one system
 * call, at the end of the turn.
 *
 * aedes writes each packet on its own (mqtt-packet corks the stream and uncorks it on the next tick),
 * so a subscriber that receives from many publishers (ingest, from the whole fleet) costs one writev —
 * and, with TCP_NODELAY, one TCP segment, which its client must read — per message. Here the first
 * write of a turn corks the stream once more, and one setImmediate shared by every connection uncorks
 * all that were written to. Nothing waits on a timer: the flush runs at the end of the same or of the
 * next (non-blocking) turn of the loop, before the callback of any write it holds (aedes' write
 * callbacks are setImmediates too, queued after it), so a packet is held for at most one turn, and
 * backpressure works as before (the flush is what lets 'drain' come).
 */
import type { Writable } from 'node:stream';

const holding = new Set<Writable>();
let flushScheduled = false;

function flushAll(): void {
  flushScheduled = false;
  // A write made while flushing (from a write's side effects) corks again for the next flush.
  const streams = [...holding];
  holding.clear();
  for (const stream of streams) stream.uncork();
}

export function coalesceWrites(stream: Writable): void {
  const write = stream.write;
  stream.write = function coalescedWrite(this: Writable, ...args: Parameters<Writable['write']>): boolean {
    if (!holding.has(this) && !this.destroyed) {
      this.cork();
      holding.add(this);
      if (!flushScheduled) {
        flushScheduled = true;
        setImmediate(flushAll);
      }
    }
    return write.apply(this, args);
  } as Writable['write'];
}

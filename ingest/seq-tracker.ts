/**
 * Per-device sequence memory: replay protection, deduplication and completeness are one mechanism
 * (PROTOCOL.md §5). For each device it keeps the highest accepted seq, the gaps below it (seqs never
 * received, within a window), and the seq ranges of its last few accepted messages (to tell a
 * redelivery from a replay). Pure and synchronous; persistence is `seq-store.ts`.
 */

export interface SeqTrackerOptions {
  /** Gaps further than this below the highest seq are forgotten (counted as missing for good). */
  gapWindow: number;
  /** How many recent accepted messages per device count as "might be redelivered". */
  redeliveryWindow: number;
}

export interface DeviceSeqState {
  high: number;
  /** Seqs below `high` (and within the window) that never arrived. */
  gaps: Set<number>;
  /** [first, last] seq of the most recent accepted messages, newest last. */
  recent: [number, number][];
  received: number;
  /** Readings known to be missing (gaps, including ones that fell out of the window). */
  missing: number;
}

export type SeqVerdict =
  | { kind: 'new'; fresh: number[] } // at least one seq not seen before; `fresh` are the new ones
  | { kind: 'duplicate' } // all seen, and the message is one of the last few: a redelivery
  | { kind: 'replay' }; // all seen, and not a recent message

export interface DeviceCompleteness {
  received: number;
  missing: number;
  /** received / (received + missing); 1 when nothing is known to be missing. */
  ratio: number;
}

export class SeqTracker {
  private readonly devices = new Map<string, DeviceSeqState>();

  constructor(private readonly options: SeqTrackerOptions) {}

  /** Classifies a message's seqs without changing any state. `seqs` are strictly increasing. */
  classify(device: string, seqs: readonly number[]): SeqVerdict {
    const state = this.devices.get(device);
    if (state === undefined) return { kind: 'new', fresh: [...seqs] };
    const fresh = seqs.filter((seq) => !this.seen(state, seq));
    if (fresh.length > 0) return { kind: 'new', fresh };
    const first = seqs[0]!;
    const last = seqs[seqs.length - 1]!;
    return state.recent.some(([a, b]) => a === first && b === last) ? { kind: 'duplicate' } : { kind: 'replay' };
  }

  /** Records an accepted message: its fresh seqs, and its range as a recent message. */
  accept(device: string, fresh: readonly number[], range: [number, number]): void {
    let state = this.devices.get(device);
    if (state === undefined) {
      // The first seq we see starts the record: earlier seqs are not counted as missing.
      state = { high: fresh[0]! - 1, gaps: new Set(), recent: [], received: 0, missing: 0 };
      this.devices.set(device, state);
    }
    for (const seq of fresh) this.acceptSeq(state, seq);
    state.recent.push(range);
    if (state.recent.length > this.options.redeliveryWindow) state.recent.shift();
  }

  completeness(device: string): DeviceCompleteness | undefined {
    const state = this.devices.get(device);
    if (state === undefined) return undefined;
    const total = state.received + state.missing;
    return { received: state.received, missing: state.missing, ratio: total === 0 ? 1 : state.received / total };
  }

  devicesTracked(): IterableIterator<[string, DeviceSeqState]> {
    return this.devices.entries();
  }

  /** Replaces a device's state (loading a snapshot). */
  restore(device: string, state: DeviceSeqState): void {
    this.devices.set(device, state);
  }

  private seen(state: DeviceSeqState, seq: number): boolean {
    if (seq > state.high) return false;
    // Far below the window: treated as seen, so a device cannot fill ancient gaps (or replay into them).
    if (seq < state.high - this.options.gapWindow) return true;
    return !state.gaps.has(seq);
  }

  private acceptSeq(state: DeviceSeqState, seq: number): void {
    state.received++;
    if (seq <= state.high) {
      if (state.gaps.delete(seq)) state.missing--;
      return;
    }
    const gapStart = Math.max(state.high + 1, seq - this.options.gapWindow);
    // A jump beyond the window: the part we cannot remember still counts as missing.
    state.missing += gapStart - (state.high + 1);
    for (let s = gapStart; s < seq; s++) {
      state.gaps.add(s);
      state.missing++;
    }
    state.high = seq;
    // Gaps that fell below the window only cost memory (`seen` already treats them as seen), so they
    // are swept now and then rather than on every reading.
    if (state.gaps.size > 1024 && state.received % 1024 === 0) this.trimGaps(state);
  }

  private trimGaps(state: DeviceSeqState): void {
    const floor = state.high - this.options.gapWindow;
    for (const gap of state.gaps) if (gap < floor) state.gaps.delete(gap);
  }
}

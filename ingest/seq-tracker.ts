/**
 * Per-device sequence memory: replay protection, deduplication and completeness are one mechanism
 * (PROTOCOL.md §5). For each device it keeps the highest accepted seq, the gaps below it (seqs never
 * received, within a window), and the seq range and content digest of the accepted messages that may
 * still be redelivered (to tell a redelivery from a replay). Pure and synchronous; persistence is
 * `seq-store.ts`.
 *
 * Which messages are remembered, and why that is enough (issue 14). A message whose seqs were all
 * accepted before is a redelivery when its content is that of the accepted message with the same seqs,
 * and a replay when it is not. Content is compared by a digest of the message's signature: the signature
 * is a deterministic MAC (HMAC-SHA256, or pure Ed25519, RFC 8032) over the canonical bytes of every
 * signed field, so equal content gives equal signatures, and it costs nothing to take (see
 * `signatureDigest`). Remembering every message for ever would cost memory without bound, so a device
 * keeps its messages that are
 *   - among its own last `redeliveryWindow` (a device resending what it had in flight when its
 *     connection dropped: that is at most what it had in flight, its own recent messages), or
 *   - among the fleet's last `fleetWindow` accepted messages (the broker redelivering ingest's
 *     unacknowledged messages after a reconnect [MQTT-4.4.0-1], in their original order: ingest reads at
 *     most `maxUnacked` messages past one it has not acknowledged, so between an accepted message and
 *     its redelivery the fleet has at most maxUnacked more on the old connection, plus at most
 *     maxUnacked on the new one before the broker's resend reaches it; `fleetWindow` must be at least
 *     twice maxUnacked, which ingest/index.ts checks at start-up).
 * Memory is bounded whatever the fleet does, for ever: at most devices × redeliveryWindow + fleetWindow
 * entries of three numbers (24 bytes; arrays hold up to twice what they keep, as forgotten entries are
 * reclaimed in bulk), plus one reference per message of the fleet window. Measured with the defaults
 * (64, 65,536): 10,000 devices take 35 MB in all, 3.5 KB a device (the version before, which kept 64
 * ranges a device and no digests, took 51 MB).
 * A fully seen message that is in neither (an old copy, or a resend grouped differently) is
 * `outside-window`: the pipeline then asks the store whether the readings are already stored as sent.
 */

export interface SeqTrackerOptions {
  /** Gaps further than this below the highest seq are forgotten (counted as missing for good). */
  gapWindow: number;
  /** Accepted messages each device remembers of its own, whatever the rest of the fleet does. */
  redeliveryWindow: number;
  /** A device also remembers its messages among the fleet's last this many accepted ones. */
  fleetWindow: number;
}

/**
 * The digest of a message remembered from a file written before digests were kept (a seq log line or
 * snapshot without them): its content is unknown, and it matches any message with its seq range, as
 * every remembered message did then.
 */
export const UNKNOWN_DIGEST = -1;

/** Fields of a remembered message in `DeviceSeqState.recent`. */
const ENTRY = 3;

export interface DeviceSeqState {
  high: number;
  /** Seqs below `high` (and within the window) that never arrived. */
  gaps: Set<number>;
  /**
   * Remembered accepted messages, oldest first, in `recent[recentHead..recentEnd)`: `first seq, last
   * seq, digest` each, flat (three unboxed numbers a message, no array each). The array never shrinks:
   * shrinking and growing it again on every compaction was most of the cost of remembering (measured).
   */
  recent: number[];
  recentHead: number;
  recentEnd: number;
  /** How many of the remembered messages are among the fleet's last `fleetWindow` accepted. */
  inFleetWindow: number;
  received: number;
  /** Readings known to be missing (gaps, including ones that fell out of the window). */
  missing: number;
}

/** A device's memory as saved in a snapshot. `recent` entries are [first, last, digest?], oldest first. */
export interface SavedDeviceState {
  high: number;
  gaps: Iterable<number>;
  recent: readonly (readonly number[])[];
  received: number;
  missing: number;
}

export type SeqVerdict =
  | { kind: 'new'; fresh: number[] } // at least one seq not seen before; `fresh` are the new ones
  | { kind: 'duplicate' } // all seen, and the content of a remembered message with the same seqs
  | { kind: 'replay' } // all seen, and a remembered message with the same seqs had other content
  | { kind: 'outside-window' }; // all seen, and no remembered message has these seqs

export interface DeviceCompleteness {
  received: number;
  missing: number;
  /** received / (received + missing); 1 when nothing is known to be missing. */
  ratio: number;
}

/** Value of each base64 character (RFC 4648 §4), by char code. */
const BASE64_VALUE = new Uint8Array(128);
for (const [i, c] of [...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'].entries()) BASE64_VALUE[c.charCodeAt(0)] = i;

/**
 * A message's content digest: the first 30 bits of its signature, read from its first 5 base64
 * characters. Five character reads: no hashing on the hot path. 30 bits, because V8 keeps an integer
 * below 2^30 unboxed (a "small integer"), in the arrays of remembered messages and on its way into the
 * seq log line, where a 48-bit digest (a double) cost 200 ns a message more (measured).
 * A different message with the same seqs has the same digest with probability 2^-30: such a replay
 * would be counted as a duplicate instead of being quarantined; nothing of it is written either way
 * (and a device that searched for such a pair with its own key would gain nothing). A redelivery is
 * never mistaken: equal content, equal signature, equal digest.
 */
export function signatureDigest(sig: string): number {
  let digest = 0;
  for (let i = 0; i < 5; i++) digest = digest * 64 + (BASE64_VALUE[sig.charCodeAt(i) & 127] ?? 0);
  return digest;
}

export class SeqTracker {
  private readonly devices = new Map<string, DeviceSeqState>();
  /** The devices of the fleet's last `fleetWindow` accepted messages: a ring, oldest at `fleetOldest`. */
  private readonly fleet: DeviceSeqState[] = [];
  private fleetOldest = 0;

  constructor(private readonly options: SeqTrackerOptions) {}

  /** Classifies a message's seqs without changing any state. `seqs` are strictly increasing. */
  classify(device: string, seqs: readonly number[], digest: number): SeqVerdict {
    const state = this.devices.get(device);
    if (state === undefined) return { kind: 'new', fresh: [...seqs] };
    const fresh = seqs.filter((seq) => !this.seen(state, seq));
    if (fresh.length > 0) return { kind: 'new', fresh };
    return this.recall(state, seqs[0]!, seqs[seqs.length - 1]!, digest);
  }

  /** Records an accepted message: its fresh seqs, and its range and digest as a remembered message. */
  accept(device: string, fresh: readonly number[], range: readonly [number, number], digest: number): void {
    let state = this.devices.get(device);
    if (state === undefined) {
      // The first seq we see starts the record: earlier seqs are not counted as missing.
      state = { high: fresh[0]! - 1, gaps: new Set(), recent: [], recentHead: 0, recentEnd: 0, inFleetWindow: 0, received: 0, missing: 0 };
      this.devices.set(device, state);
    }
    for (const seq of fresh) this.acceptSeq(state, seq);
    this.remember(state, range[0], range[1], digest);
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

  /** A device's remembered messages, oldest first, as [first, last, digest]. */
  remembered(state: DeviceSeqState): [number, number, number][] {
    const entries: [number, number, number][] = [];
    for (let i = state.recentHead; i < state.recentEnd; i += ENTRY) entries.push([state.recent[i]!, state.recent[i + 1]!, state.recent[i + 2]!]);
    return entries;
  }

  /** The devices of the fleet window's messages, oldest first (for the snapshot). */
  fleetOrder(): DeviceSeqState[] {
    return [...this.fleet.slice(this.fleetOldest), ...this.fleet.slice(0, this.fleetOldest)];
  }

  /**
   * Replaces a device's state (loading a snapshot). Its remembered messages count as outside the fleet
   * window until `restoreFleetOrder` says which are in it.
   */
  restore(device: string, saved: SavedDeviceState): void {
    const recent: number[] = [];
    for (const entry of saved.recent) recent.push(entry[0]!, entry[1]!, entry[2] ?? UNKNOWN_DIGEST);
    this.devices.set(device, { high: saved.high, gaps: new Set(saved.gaps), recent, recentHead: 0, recentEnd: recent.length, inFleetWindow: 0, received: saved.received, missing: saved.missing });
  }

  /**
   * Rebuilds the fleet window from a snapshot: the device of each message in it, oldest first. Each
   * device's newest remembered messages are the ones in the window, as they were when it was saved.
   */
  restoreFleetOrder(devices: readonly string[]): void {
    for (const device of devices) {
      const state = this.devices.get(device);
      if (state !== undefined) this.enterFleetWindow(state);
    }
    for (const state of this.devices.values()) this.forgetOld(state);
  }

  private seen(state: DeviceSeqState, seq: number): boolean {
    if (seq > state.high) return false;
    // Far below the window: treated as seen, so a device cannot fill ancient gaps (or replay into them).
    if (seq < state.high - this.options.gapWindow) return true;
    return !state.gaps.has(seq);
  }

  /** What the remembered messages say of a fully seen message with seqs first..last. */
  private recall(state: DeviceSeqState, first: number, last: number, digest: number): SeqVerdict {
    const { recent } = state;
    let sameSeqs = false;
    // Newest first: a redelivery is most often of a recent message. This runs only for fully seen
    // messages (redeliveries and replays), never for new ones.
    for (let i = state.recentEnd - ENTRY; i >= state.recentHead; i -= ENTRY) {
      if (recent[i] !== first || recent[i + 1] !== last) continue;
      const remembered = recent[i + 2];
      if (remembered === digest || remembered === UNKNOWN_DIGEST) return { kind: 'duplicate' };
      sameSeqs = true;
    }
    return sameSeqs ? { kind: 'replay' } : { kind: 'outside-window' };
  }

  private remember(state: DeviceSeqState, first: number, last: number, digest: number): void {
    const { recent } = state;
    const end = state.recentEnd;
    if (end === recent.length) recent.push(first, last, digest);
    else {
      recent[end] = first;
      recent[end + 1] = last;
      recent[end + 2] = digest;
    }
    state.recentEnd = end + ENTRY;
    this.enterFleetWindow(state);
    this.forgetOld(state);
  }

  /** Counts one more message of `state` in the fleet window; the window's oldest one leaves it. */
  private enterFleetWindow(state: DeviceSeqState): void {
    state.inFleetWindow++;
    if (this.fleet.length < this.options.fleetWindow) {
      this.fleet.push(state);
      return;
    }
    const leaving = this.fleet[this.fleetOldest]!;
    this.fleet[this.fleetOldest] = state;
    this.fleetOldest = (this.fleetOldest + 1) % this.fleet.length;
    leaving.inFleetWindow--;
    if (leaving !== state) this.forgetOld(leaving);
  }

  /** Forgets a device's messages that are neither among its own last few nor in the fleet window. */
  private forgetOld(state: DeviceSeqState): void {
    const keep = Math.max(this.options.redeliveryWindow, state.inFleetWindow) * ENTRY;
    const excess = state.recentEnd - state.recentHead - keep;
    if (excess <= 0) return;
    state.recentHead += excess;
    // Reuse the forgotten prefix once it is as long as what is kept: amortised O(1) a message.
    if (state.recentHead >= state.recentEnd - state.recentHead) {
      state.recent.copyWithin(0, state.recentHead, state.recentEnd);
      state.recentEnd -= state.recentHead;
      state.recentHead = 0;
    }
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

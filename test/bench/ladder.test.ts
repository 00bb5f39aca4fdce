/**
 * The bench's pure logic: the capacity ladder (bench/ladder.ts), medians of repeated runs
 * (bench/stats.ts) and the load generator's schedule and pre-built packets (bench/loadgen.ts). No
 * servers, no timing: the benches themselves are not run in CI.
 */
import { parser } from 'mqtt-packet';
import { describe, expect, it } from 'vitest';
import { Registry } from '../../core/registry.ts';
import type { TelemetryMessage } from '../../core/schemas.ts';
import { verifyTelemetrySignature } from '../../core/signature.ts';
import { provision } from '../../harness/publisher.ts';
import { DEFAULT_CRITERIA, DEFAULT_LADDER, capacityOf, judgeRung, nextRate, searchCapacity, type LadderOptions, type Rung } from '../../bench/ladder.ts';
import { dueForDevice, dueMsOf, planLoad, readingIndex } from '../../bench/loadgen.ts';
import { median, repeated } from '../../bench/stats.ts';

describe('judgeRung', () => {
  const good = { offered: 100_000, stored: 100_000, lost: 0, p99Ms: 250 };
  it.each([
    ['everything stored, nothing lost, p99 within 1 s', good, []],
    ['exactly 98 % stored', { ...good, stored: 98_000 }, []],
    ['p99 exactly 1 s', { ...good, p99Ms: 1000 }, []],
    ['under 98 % stored', { ...good, stored: 97_999 }, ['stored 97999 < 0.98 × offered 100000']],
    ['one reading lost', { ...good, lost: 1 }, ['lost 1']],
    ['loss unknown', { ...good, lost: null }, ['loss unknown']],
    ['p99 over 1 s', { ...good, p99Ms: 1001 }, ['p99 1001 ms > 1000 ms']],
    ['no latency samples', { ...good, p99Ms: null }, ['no latency samples']],
    ['nothing offered', { ...good, offered: 0, stored: 0 }, ['nothing was offered']],
    ['the run failed', { offered: 0, stored: 0, lost: null, p99Ms: null, failed: true }, ['the run failed', 'nothing was offered', 'loss unknown', 'no latency samples']],
    ['several misses at once', { offered: 100, stored: 50, lost: 3, p99Ms: 5000 }, ['stored 50 < 0.98 × offered 100', 'lost 3', 'p99 5000 ms > 1000 ms']],
  ])('%s', (_name, outcome, reasons) => {
    const verdict = judgeRung(outcome, DEFAULT_CRITERIA);
    expect(verdict.reasons).toEqual(reasons);
    expect(verdict.passed).toBe(reasons.length === 0);
  });
});

describe('nextRate', () => {
  const options: LadderOptions = { ...DEFAULT_LADDER, startRate: 4000, factor: 1.25, bisections: 1, maxRungs: 10, roundTo: 100, minRate: 100 };
  const rungs = (...pairs: [number, boolean][]): Rung[] => pairs.map(([rate, passed]) => ({ rate, passed }));
  it.each<[string, Rung[], number | undefined]>([
    ['starts at the start rate', [], 4000],
    ['steps up by the factor after a pass', rungs([4000, true]), 5000],
    ['keeps stepping up (rounded to 100)', rungs([4000, true], [5000, true]), 6300],
    ['bisects the first bracket', rungs([4000, true], [5000, true], [6300, false]), 5700],
    ['stops after one bisection (pass)', rungs([4000, true], [5000, true], [6300, false], [5700, true]), undefined],
    ['stops after one bisection (fail)', rungs([4000, true], [5000, true], [6300, false], [5700, false]), undefined],
    ['steps down when the first rung fails', rungs([4000, false]), 3200],
    ['keeps stepping down', rungs([4000, false], [3200, false]), 2600],
    ['bisects once a lower rung passes', rungs([4000, false], [3200, true]), 3600],
    ['stops at the rung limit', rungs(...Array.from({ length: 10 }, (_, i): [number, boolean] => [1000 * (i + 1), true])), undefined],
    ['stops when the bracket cannot be split', rungs([4000, true], [4100, false]), undefined],
  ])('%s', (_name, history, expected) => {
    expect(nextRate(history, options)).toBe(expected);
  });

  it('bisects as often as asked', () => {
    const twice = { ...options, bisections: 2 };
    expect(nextRate(rungs([4000, true], [5000, false], [4500, true]), twice)).toBe(4800);
    expect(nextRate(rungs([4000, true], [5000, false], [4500, true], [4800, false]), twice)).toBeUndefined();
  });

  it('never goes below the floor', () => {
    const low = { ...options, startRate: 200, minRate: 100 };
    expect(nextRate(rungs([200, false]), low)).toBe(100); // 200 / 1.25 rounds back to 200: one step of 100 instead
    expect(nextRate(rungs([200, false], [100, false]), low)).toBeUndefined();
  });
});

describe('capacityOf', () => {
  it.each<[string, Rung[], { capacity: number | null; bounded: boolean }]>([
    ['the highest pass below the first failure', [{ rate: 4000, passed: true }, { rate: 5000, passed: true }, { rate: 6300, passed: false }, { rate: 5700, passed: true }], { capacity: 5700, bounded: true }],
    ['a failed bisection leaves the last pass', [{ rate: 4000, passed: true }, { rate: 5000, passed: false }, { rate: 4500, passed: false }], { capacity: 4000, bounded: true }],
    ['a pass above a failure is not capacity (noise)', [{ rate: 4000, passed: true }, { rate: 5000, passed: false }, { rate: 6000, passed: true }], { capacity: 4000, bounded: true }],
    ['no failure: at least the highest pass', [{ rate: 4000, passed: true }, { rate: 5000, passed: true }], { capacity: 5000, bounded: false }],
    ['no pass: none', [{ rate: 4000, passed: false }, { rate: 3200, passed: false }], { capacity: null, bounded: true }],
    ['nothing run', [], { capacity: null, bounded: false }],
  ])('%s', (_name, history, expected) => {
    expect(capacityOf(history)).toEqual(expected);
  });
});

describe('searchCapacity', () => {
  it('finds a simulated pipeline\'s limit to within a bisection of a step', async () => {
    const limit = 12_345;
    const tried: number[] = [];
    const result = await searchCapacity(async (rate) => {
      tried.push(rate);
      return { passed: rate <= limit };
    }, { ...DEFAULT_LADDER, startRate: 5000 });
    expect(tried).toEqual([5000, 6300, 7900, 9900, 12_400, 11_200]);
    expect(result.capacity).toBe(11_200);
    expect(result.bounded).toBe(true);
    expect(result.rungs.map((r) => r.passed)).toEqual([true, true, true, true, false, true]);
  });

  it('steps down to a pipeline slower than the start rate', async () => {
    const result = await searchCapacity(async (rate) => ({ passed: rate <= 2000 }), { ...DEFAULT_LADDER, startRate: 5000 });
    expect(result.rungs.map((r) => r.rate)).toEqual([5000, 4000, 3200, 2600, 2100, 1700, 1900]);
    expect(result.capacity).toBe(1900);
  });
});

describe('median and repeated', () => {
  it.each<[number[], number | null]>([
    [[], null],
    [[5], 5],
    [[3, 1, 2], 2],
    [[4, 1, 3, 2], 2.5],
    [[1, Number.NaN, 3], 2],
  ])('median of %j is %s', (values, expected) => {
    expect(median(values)).toBe(expected);
  });

  it('reports the median, the range and every run, skipping runs without a value', () => {
    expect(repeated([100, null, 120, 90])).toEqual({ median: 100, min: 90, max: 120, relativeSpread: 0.3, runs: [100, null, 120, 90] });
    expect(repeated([null, undefined])).toEqual({ median: null, min: null, max: null, relativeSpread: null, runs: [null, null] });
  });
});

describe('the load generator\'s plan', () => {
  it('puts reading i on device i mod N as its seq ⌊i / N⌋ + 1', () => {
    const n = 7;
    for (let i = 0; i < 100; i++) expect(readingIndex(i % n, Math.floor(i / n) + 1, n)).toBe(i);
    // Of the first `due` readings, device j has ⌈(due − j) / N⌉.
    for (let due = 0; due < 30; due++) {
      let total = 0;
      for (let j = 0; j < n; j++) total += dueForDevice(due, j, n);
      expect(total).toBe(due);
    }
  });

  it('builds valid, signed MQTT PUBLISH packets with increasing timestamps, before the run', () => {
    const devices = provision(new Registry(), 3, 'bench');
    const plan = planLoad(devices, 40, 1, { tsBase: 1_767_000_000_000 });
    expect(plan.total).toBe(40);
    expect(plan.devices.map((d) => d.count)).toEqual([14, 13, 13]);
    for (const [j, load] of plan.devices.entries()) {
      const packets: { topic: string; qos: number; messageId: number; payload: Buffer }[] = [];
      const p = parser();
      p.on('packet', (packet) => packets.push(packet as never));
      p.on('error', (err) => {
        throw err;
      });
      p.parse(load.packets);
      expect(packets).toHaveLength(load.count);
      packets.forEach((packet, k) => {
        expect(packet).toMatchObject({ topic: `sensors/bench-${j}/telemetry`, qos: 1, messageId: k + 1 });
        const message = JSON.parse(packet.payload.toString()) as TelemetryMessage;
        expect(message.readings[0]).toMatchObject({ seq: k + 1, ts: load.ts[k] });
        const key = devices[j]!.key;
        if (key.alg !== 'hmac-sha256') throw new Error('provision() gives HMAC devices');
        expect(verifyTelemetrySignature(message, key)).toBe(true);
        if (k > 0) expect(load.ts[k]!).toBeGreaterThan(load.ts[k - 1]!);
        // Its ts is its due time: tsBase + i × 1000 / rate (40/s: 25 ms apart across the fleet).
        expect(load.ts[k]).toBe(1_767_000_000_000 + readingIndex(j, k + 1, 3) * 25);
        expect(load.packets.subarray(load.offsets[k]!, load.offsets[k + 1]!)[0]).toBe(0x32);
      });
    }
  });

  it('puts perMessage readings in a message, with consecutive seqs and rising timestamps, and knows when each was due', () => {
    const devices = provision(new Registry(), 3, 'bench');
    const plan = planLoad(devices, 400, 1, { perMessage: 10, tsBase: 1_767_000_000_000 });
    expect(plan).toMatchObject({ total: 400, messages: 40, messageRate: 40, perMessage: 10 });
    expect(plan.devices.map((d) => d.count)).toEqual([14, 13, 13]);
    const load = plan.devices[1]!;
    const packets: { payload: Buffer }[] = [];
    const p = parser();
    p.on('packet', (packet) => packets.push(packet as never));
    p.parse(load.packets);
    expect(packets).toHaveLength(13);
    let lastTs = 0;
    packets.forEach((packet, k) => {
      const message = JSON.parse(packet.payload.toString()) as TelemetryMessage;
      expect(message.readings.map((r) => r.seq)).toEqual(Array.from({ length: 10 }, (_, r) => k * 10 + r + 1));
      for (const r of message.readings) {
        expect(r.ts).toBeGreaterThan(lastTs);
        lastTs = r.ts;
      }
      expect(load.ts[k]).toBe(lastTs);
      // Every reading of message k of device 1 was due with the message: (k · 3 + 1) / 40 s.
      for (const r of message.readings) expect(dueMsOf(plan, 1, r.seq)).toBe((k * 3 + 1) * 25);
    });
  });
});

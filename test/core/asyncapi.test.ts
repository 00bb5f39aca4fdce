/**
 * core/asyncapi.json, the AsyncAPI 3.0 description of the MQTT topics and /live: it is what the code
 * generates (regenerate with `npx tsx core/asyncapi.ts --write`), it validates against AsyncAPI's own
 * 3.0.0 schema with every reference resolved, every topic builder of core/topics.ts and every /live
 * frame of core/live.ts is described, who sends and receives agrees with the broker's ACL, and real
 * messages (built with the zod schemas) validate against the payloads it describes, bad ones do not.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { mayPublish, mayReceive, type Principal } from '../../broker/acl.ts';
import { ASYNCAPI_PATH, LIVE_CLIENT_FRAMES, LIVE_FRAME_DOCS, LIVE_SERVER_FRAMES, NOT_CHANNELS, TOPIC_CHANNELS, asyncApi, asyncApiFileCurrent } from '../../core/asyncapi.ts';
import { LiveClientFrameSchema, LiveServerFrameSchema } from '../../core/live.ts';
import { topics } from '../../core/topics.ts';
import { schemaValidator, unresolvedRefs, validateAsyncApi } from './api-doc-validators.ts';

type Json = Record<string, unknown>;
const doc = asyncApi() as Json & { channels: Record<string, Json>; operations: Record<string, Json>; components: Json & { messages: Record<string, Json> } };

/** Every function of core/topics.ts that builds a topic from a device id (the filters are strings). */
const builders = Object.entries(topics)
  .filter(([, value]) => typeof value === 'function')
  .map(([name]) => name);

describe('core/asyncapi.json', () => {
  it('is current (npx tsx core/asyncapi.ts --write)', async () => {
    expect(await asyncApiFileCurrent(), `${ASYNCAPI_PATH} is stale`).toBe(true);
    expect(JSON.parse(readFileSync(ASYNCAPI_PATH, 'utf8'))).toEqual(doc);
  });

  it('is a valid AsyncAPI 3.0 document whose every $ref resolves', () => {
    const result = validateAsyncApi(doc);
    expect(result.valid, JSON.stringify(result.errors)).toBe(true);
    expect(unresolvedRefs(doc)).toEqual([]);
  });

  it('the validator is real: a broken document is refused', () => {
    const broken = structuredClone(doc);
    (broken.operations.deviceSendsTelemetry as Json).action = 'publish'; // AsyncAPI 2's word, not 3's
    expect(validateAsyncApi(broken).valid).toBe(false);
    const dangling = structuredClone(doc);
    (dangling.channels.status as Json).messages = { status: { $ref: '#/components/messages/nothing' } };
    expect(unresolvedRefs(dangling)).toEqual(['#/components/messages/nothing']);
  });
});

describe('every topic of core/topics.ts has a channel', () => {
  it('each topic builder is described, or listed as no channel with its reason', () => {
    const described = Object.keys(TOPIC_CHANNELS);
    const excluded = Object.keys(NOT_CHANNELS);
    expect(builders.filter((name) => !described.includes(name) && !excluded.includes(name)), 'topic builders without a channel').toEqual([]);
    expect([...described, ...excluded].filter((name) => !builders.includes(name)), 'channels of no topic builder').toEqual([]);
    expect(described.filter((name) => excluded.includes(name))).toEqual([]);
  });

  it.each(Object.keys(TOPIC_CHANNELS))('%s: its address is what the builder builds, its parameters those of the address', (builder) => {
    const channel = doc.channels[builder]!;
    const build = topics[builder as keyof typeof topics] as (deviceId: string) => string;
    expect(channel.address).toBe(build('{deviceId}'));
    const inAddress = [...String(channel.address).matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
    expect(Object.keys((channel.parameters ?? {}) as Json)).toEqual(inAddress);
    expect(Object.keys(channel.messages as Json).length).toBeGreaterThan(0);
  });

  it('every operation sends or receives on a channel, with messages of that channel', () => {
    for (const [name, operation] of Object.entries(doc.operations)) {
      const channelRef = String((operation.channel as Json).$ref);
      for (const message of operation.messages as Json[]) expect(String(message.$ref).startsWith(`${channelRef}/messages/`), `${name}: ${String(message.$ref)}`).toBe(true);
    }
  });
});

describe('who sends and who receives agrees with the broker ACL (broker/acl.ts)', () => {
  // A device's topic tree depends on its payload mapping: Tasmota's and Shelly's topics are theirs only.
  const deviceTree: Partial<Record<string, 'tasmota' | 'shelly'>> = { tasmotaSensor: 'tasmota', shellyEvents: 'shelly' };

  it.each(Object.entries(TOPIC_CHANNELS))('%s', (builder, channel) => {
    const topic = (topics[builder as keyof typeof topics] as (deviceId: string) => string)('dev-1');
    for (const sender of channel!.senders) {
      if (sender === 'broker') continue; // the broker publishes as itself, past the ACL
      const tree = deviceTree[builder];
      const principal: Principal = sender === 'device' ? { kind: 'device', deviceId: 'dev-1', verifier: 'v', ...(tree === undefined ? {} : { tree }) } : { kind: 'service', service: sender };
      expect(mayPublish(principal, topic), `${sender} publishes ${topic}`).toBe(true);
      expect(doc.operations[`${sender}Sends${builder[0]!.toUpperCase()}${builder.slice(1)}`], `${sender} sends ${builder}`).toBeDefined();
    }
    for (const receiver of channel!.receivers) {
      if (receiver === 'device' || receiver === 'broker') throw new Error(`${builder}: only services are described as receivers`);
      expect(mayReceive({ kind: 'service', service: receiver }, topic), `${receiver} receives ${topic}`).toBe(true);
      expect(doc.operations[`${receiver}Receives${builder[0]!.toUpperCase()}${builder.slice(1)}`]).toBeDefined();
    }
  });

  it('another device may not publish on a device\'s topic (the ACL check above can fail)', () => {
    expect(mayPublish({ kind: 'device', deviceId: 'dev-2', verifier: 'v' }, topics.telemetry('dev-1'))).toBe(false);
  });
});

describe('/live', () => {
  it('every frame of core/live.ts is a message of the live channel, with its description', () => {
    const types = [...LIVE_CLIENT_FRAMES, ...LIVE_SERVER_FRAMES].map((f) => f.type);
    expect(types.length).toBe(LiveClientFrameSchema.options.length + LiveServerFrameSchema.options.length);
    expect(Object.keys(LIVE_FRAME_DOCS).sort(), 'LIVE_FRAME_DOCS: one description per frame type').toEqual([...types].sort());
    const live = doc.channels.live!;
    for (const type of types) {
      const name = `live${type[0]!.toUpperCase()}${type.slice(1)}`;
      expect(live.messages as Json).toHaveProperty(name);
      expect(doc.components.messages[name]!.summary).toBe(LIVE_FRAME_DOCS[type]);
    }
  });
});

describe('real messages validate against the payloads described, bad ones do not', () => {
  const now = Date.now();
  const cases: [message: string, good: unknown, bad: unknown][] = [
    ['telemetry', { v: 1, device: 'dev-1', readings: [{ seq: 1, ts: now, values: { temperature: 21.5 } }], sig: 'AAAA' }, { v: 1, device: 'dev-1', readings: [], sig: 'AAAA' }],
    ['status', { v: 1, device: 'dev-1', state: 'offline', since: now, reason: 'will' }, { v: 1, device: 'dev-1', state: 'asleep', since: now }],
    ['verifiedReadings', { v: 1, device: 'dev-1', readings: [{ seq: 0, ts: now, values: { power: 3 } }], meta: {}, verifiedAt: now, trust: 'broker' }, { v: 1, device: 'Dev 1', readings: [], meta: {}, verifiedAt: now }],
    ['completeness', { v: 1, device: 'dev-1', received: 9, missing: 1, ratio: 0.9, at: now }, { v: 1, device: 'dev-1', received: 9, missing: 1, ratio: 2, at: now }],
    ['deviceCounts', { v: 1, device: 'dev-1', accepted: 5, duplicates: 0, rejected: { READING_BAD_SIGNATURE: 2 }, since: now, at: now }, { v: 1, device: 'dev-1', accepted: 5, duplicates: 0, rejected: { NOT_A_REASON: 2 }, since: now, at: now }],
    ['alertState', { v: 1, device: 'dev-1', at: now, rules: [], recent: [] }, { v: 1, device: 'dev-1', at: now, rules: [] }],
    ['tasmotaSensor', { Time: '2026-12-06T10:00:00+01:00', ENERGY: { Power: 12 } }, { Time: 1765015200 }],
    ['shellyNotification', { method: 'NotifyStatus', params: { ts: 1765015200.12, 'switch:0': { apower: 12.3 } } }, { params: {} }],
    ['liveSubscribe', { type: 'subscribe', id: 's1', devices: ['dev-1'], history: { from: '-1h' } }, { type: 'subscribe', id: 's1', devices: [], extra: 1 }],
    ['liveReadings', { type: 'readings', items: [['dev-1', 3, now, { temperature: 21.5 }], ['plug-1', 0, now, { power: 3 }, 'broker']] }, { type: 'readings', items: [['dev-1', 3]] }],
    ['liveError', { type: 'error', code: 'QUERY_INVALID', message: 'no' }, { type: 'error', code: 'QUERY_INVALID' }],
  ];

  it.each(cases)('%s', (message, good, bad) => {
    const validate = schemaValidator(doc, `#/components/messages/${message}/payload`, 'draft-07');
    expect(validate(good), JSON.stringify(validate.errors)).toBe(true);
    expect(validate(bad)).toBe(false);
  });

  it('the examples agree with the zod schemas (what the product parses with)', () => {
    expect(LiveClientFrameSchema.safeParse(cases.find(([m]) => m === 'liveSubscribe')![1]).success).toBe(true);
    expect(LiveServerFrameSchema.safeParse(cases.find(([m]) => m === 'liveReadings')![1]).success).toBe(true);
  });
});

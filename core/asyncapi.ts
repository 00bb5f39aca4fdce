/**
 * The AsyncAPI 3.0 description of sensorpipe's messages: every MQTT topic of ./topics.ts with its
 * payload schema (./schemas.ts, ./alerts.ts; the third-party payloads of ./mappings.ts as far as ingest
 * reads them), who publishes and who subscribes (the broker's ACL, broker/acl.ts), and the display's
 * `/live` WebSocket with its frames in both directions (./live.ts). Generated from the zod schemas and
 * written to core/asyncapi.json (`npx tsx core/asyncapi.ts --write`); the display serves it at
 * GET /api/asyncapi.json. A test keeps the file current, validates it against the AsyncAPI 3.0 schema,
 * and checks that every topic builder of ./topics.ts and every /live frame is described here.
 *
 * AsyncAPI's default schema format is a superset of JSON Schema draft-07, so the payloads are written
 * in draft-07; the zod schemas stay the ones that decide (refinements JSON Schema cannot say are left
 * out: PROTOCOL.md lists them).
 *
 * An AsyncAPI document usually describes one application; this one describes the whole system, so its
 * operations are named by who does them (a device, svc:ingest, svc:display, svc:alerts, a /live client),
 * each `send` or `receive` from that party's side.
 */
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { AlertStateMessageSchema } from './alerts.ts';
import { documentText, generatedFileCurrent, schemaRef, writeWhenRun, type JsonObject } from './api-docs.ts';
import { LIVE_CLOSE, LIVE_LIMITS, LiveClientFrameSchema, LiveServerFrameSchema } from './live.ts';
import { LIVE_SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX } from './live-subprotocol.ts';
import { LIMITS } from './limits.ts';
import { CompletenessMessageSchema, DeviceCountsMessageSchema, StatusMessageSchema, TelemetryMessageSchema, VerifiedReadingsSchema } from './schemas.ts';
import { topics } from './topics.ts';

export const ASYNCAPI_PATH = fileURLToPath(new URL('./asyncapi.json', import.meta.url));

/** Who takes part, by their MQTT user name (broker/acl.ts). */
const ACTORS = {
  device: 'a device, logged in as its id with its own password (the registry)',
  ingest: 'ingest, logged in as the service account svc:ingest',
  display: 'the display, logged in as the service account svc:display (read-only)',
  alerts: 'the alerts component, logged in as the service account svc:alerts',
  broker: 'the broker itself (no login): it publishes a device\'s status when it connects, disconnects or is revoked',
} as const;
type Actor = keyof typeof ACTORS;

// ---- payloads that are not ours: what ingest reads of them (core/mappings.ts) -----------------------------

/** A broker-authenticated device's payload on its telemetry topic: flat-json, or any JSON its pointers mapping reads. */
const MappedTelemetrySchema = z
  .union([
    z.looseObject({ ts: z.number().int().optional().meta({ description: 'The reading\'s time, ms since the epoch (default: when it arrived).' }) }).meta({
      description: 'flat-json: every other member is a metric name with a finite number.',
    }),
    z.unknown().meta({ description: 'pointers: any JSON; the device\'s mapping names a JSON pointer (RFC 6901) per metric, and optionally one to the time.' }),
  ])
  .meta({ id: 'MappedTelemetry', description: 'A broker-authenticated device\'s own JSON (no signature: a payload with `sig` is refused), read by its payload mapping.' });

const TasmotaSensorSchema = z
  .looseObject({
    Time: z.string().optional().meta({ description: 'Local time; read only with a UTC offset (Tasmota `SetOption52 1`), else the payload is refused.' }),
  })
  .meta({
    id: 'TasmotaSensor',
    description:
      'Tasmota\'s SENSOR telemetry, e.g. `{"Time":"2026-12-06T10:00:00+01:00","ENERGY":{"Power":12},"AM2301":{"Temperature":21.5}}`: every number up to three levels below a member is a metric named by its path (energy_power, am2301_temperature).',
  });

const ShellyNotificationSchema = z
  .looseObject({
    method: z.string().meta({ description: '`NotifyStatus` or `NotifyFullStatus` carry readings; `NotifyEvent` is read and carries none; anything else is refused.' }),
    params: z
      .looseObject({ ts: z.number().optional().meta({ description: 'Seconds since the epoch.' }) })
      .optional()
      .meta({ description: 'Components by `<name>:<n>` (switch:0, temperature:0, em:0, …): their numbers are metrics (switch_0_apower, temperature_0_tc).' }),
  })
  .meta({ id: 'ShellyNotification', description: 'A Shelly Gen2+ JSON-RPC notification (the Shelly\'s MQTT prefix is the device id).' });

// ---- the MQTT channels, one per topic builder of ./topics.ts ---------------------------------------------

type TopicBuilder = { [K in keyof typeof topics]: (typeof topics)[K] extends (deviceId: string) => string ? K : never }[keyof typeof topics];

interface ChannelDoc {
  title: string;
  description: string;
  /** The payloads the topic carries (more than one: the receiver tells them apart). */
  messages: Record<string, { title: string; schema: z.ZodType }>;
  qos: 0 | 1;
  retained: boolean;
  senders: readonly Actor[];
  receivers: readonly Actor[];
}

/** Topic builders of ./topics.ts that name no channel, and why. */
export const NOT_CHANNELS: Partial<Record<keyof typeof topics, string>> = {
  shared: 'An MQTT 5 shared-subscription filter ($share/{group}/{filter}) over the telemetry channels, not a topic of its own.',
};

/** Every topic builder of ./topics.ts, described; keyed by the builder's name. */
export const TOPIC_CHANNELS: Partial<Record<TopicBuilder, ChannelDoc>> = {
  telemetry: {
    title: 'Device telemetry',
    description:
      'A device\'s readings. A signed device sends the signed message (core/PROTOCOL.md: canonical bytes, HMAC-SHA256 or Ed25519); a broker-authenticated one its own JSON (flat-json or pointers). ' +
      'The broker acknowledges (PUBACK) only once the message is durable; ingest acknowledges only once its readings are stored or spooled. Rejected messages are quarantined with their reason code.',
    messages: { telemetry: { title: 'Signed telemetry', schema: TelemetryMessageSchema }, mappedTelemetry: { title: 'Unsigned device JSON', schema: MappedTelemetrySchema } },
    qos: 1,
    retained: false,
    senders: ['device'],
    receivers: ['ingest'],
  },
  status: {
    title: 'Device status',
    description: 'Online or offline, retained: the device on connect and on a clean close, its Last Will when it drops, and the broker (connect, disconnect, revoke, shutdown).',
    messages: { status: { title: 'Status', schema: StatusMessageSchema } },
    qos: 1,
    retained: true,
    senders: ['device', 'broker'],
    receivers: ['display', 'alerts'],
  },
  verified: {
    title: 'Verified readings (the live feed)',
    description: 'What ingest accepted, verified and stored: the only readings the display and alerts see live.',
    messages: { verifiedReadings: { title: 'Verified readings', schema: VerifiedReadingsSchema } },
    qos: 0,
    retained: false,
    senders: ['ingest'],
    receivers: ['display', 'alerts'],
  },
  completeness: {
    title: 'Completeness',
    description: 'Readings received vs missing (sequence gaps) per device, retained.',
    messages: { completeness: { title: 'Completeness', schema: CompletenessMessageSchema } },
    qos: 0,
    retained: true,
    senders: ['ingest'],
    receivers: ['display', 'alerts'],
  },
  counts: {
    title: 'Message counts',
    description: 'What became of a device\'s messages since `since`: accepted, duplicates, and rejected by reason; retained, kept across ingest restarts.',
    messages: { deviceCounts: { title: 'Device counts', schema: DeviceCountsMessageSchema } },
    qos: 1,
    retained: true,
    senders: ['ingest'],
    receivers: ['display', 'alerts'],
  },
  alerts: {
    title: 'Alert state',
    description: 'Every alert rule that applies to the device, its state, and the device\'s recent alert events; retained, so a display starting anywhere shows them.',
    messages: { alertState: { title: 'Alert state', schema: AlertStateMessageSchema } },
    qos: 1,
    retained: true,
    senders: ['alerts'],
    receivers: ['display'],
  },
  tasmotaSensor: {
    title: 'Tasmota telemetry',
    description: 'A Tasmota device (payload mapping `tasmota`, Topic = its device id, FullTopic `%prefix%/%topic%/`). Its other topics (stat/, cmnd/, tele/{id}/LWT) are its own and not read.',
    messages: { tasmotaSensor: { title: 'Tasmota SENSOR', schema: TasmotaSensorSchema } },
    qos: 0,
    retained: false,
    senders: ['device'],
    receivers: ['ingest'],
  },
  shellyEvents: {
    title: 'Shelly Gen2 notifications',
    description: 'A Shelly Gen2+ device (payload mapping `shelly-gen2`, MQTT prefix = its device id). The rest of its {id}/ tree is its own and not read.',
    messages: { shellyNotification: { title: 'Shelly notification', schema: ShellyNotificationSchema } },
    qos: 0,
    retained: false,
    senders: ['device'],
    receivers: ['ingest'],
  },
};

/** The frames of /live, by their `type`; every member of core/live.ts's frame unions needs one. */
export const LIVE_FRAME_DOCS: Record<string, string> = {
  subscribe: `Asks for live readings of some devices ("*": the whole fleet), optionally some metrics, only the newest values, and each device's history first. At most ${LIVE_LIMITS.maxSubscriptionsPerClient} subscriptions per client.`,
  unsubscribe: 'Ends a subscription.',
  welcome: 'Sent once, on connect: the protocol version, the server\'s time and tick, and the limits.',
  subscribed: 'The subscription is in force; live readings for it follow.',
  unsubscribed: 'The subscription has ended.',
  history: 'A device\'s history for a subscription that asked for it, before any live reading of that device: no gap, no overlap with what follows.',
  readings: 'Live readings, many per frame: [device, seq, ts, {metric: value}], and "broker" for an unsigned reading. `conflated`: readings a slow client missed (the newest value per metric was kept).',
  status: 'A device went online or offline.',
  error: 'A refused frame or subscription, with a stable code (docs/ERRORS.md) and the subscription id if it had one.',
};

/** The type literal of a frame schema (a member of a discriminated union on `type`). */
function frameType(schema: z.ZodType): string {
  const type = (schema as z.ZodObject).shape.type;
  return String((type as z.ZodLiteral<string>).value);
}

export const LIVE_CLIENT_FRAMES = LiveClientFrameSchema.options.map((schema) => ({ type: frameType(schema), schema }));
export const LIVE_SERVER_FRAMES = LiveServerFrameSchema.options.map((schema) => ({ type: frameType(schema), schema }));

// ---- the document ----------------------------------------------------------------------------------------

const ref = (path: string): JsonObject => ({ $ref: `#/${path}` });
const capital = (text: string): string => `${text[0]!.toUpperCase()}${text.slice(1)}`;

/** The MQTT binding of an operation (bindings/mqtt 0.2.0): its QoS and retain flag. */
const mqttBinding = (channel: ChannelDoc): JsonObject => ({ mqtt: { qos: channel.qos, retain: channel.retained, bindingVersion: '0.2.0' } });

export function asyncApi(): JsonObject {
  const schemas: JsonObject = {};
  const messages: JsonObject = {};
  const channels: JsonObject = {};
  const operations: JsonObject = {};
  const payload = (schema: z.ZodType, io: 'input' | 'output'): JsonObject => schemaRef(schema, schemas, { target: 'draft-07', io });

  for (const [builder, channel] of Object.entries(TOPIC_CHANNELS) as [TopicBuilder, ChannelDoc][]) {
    const channelMessages: JsonObject = {};
    for (const [name, message] of Object.entries(channel.messages)) {
      messages[name] = { name, title: message.title, contentType: 'application/json', payload: payload(message.schema, 'input') };
      channelMessages[name] = ref(`components/messages/${name}`);
    }
    channels[builder] = {
      address: topics[builder]('{deviceId}'),
      title: channel.title,
      description: `${channel.description} QoS ${channel.qos}${channel.retained ? ', retained' : ''}.`,
      servers: [ref('servers/mqtt'), ref('servers/mqtt-ws')],
      parameters: { deviceId: ref('components/parameters/deviceId') },
      messages: channelMessages,
    };
    const messageRefs = Object.keys(channel.messages).map((name) => ref(`channels/${builder}/messages/${name}`));
    for (const [action, actors] of [['send', channel.senders], ['receive', channel.receivers]] as const) {
      for (const actor of actors) {
        operations[`${actor}${capital(action)}s${capital(builder)}`] = {
          action,
          channel: ref(`channels/${builder}`),
          title: `${capital(actor)} ${action}s ${channel.title.toLowerCase()}`,
          summary: `${capital(ACTORS[actor])}.`,
          ...(actor === 'broker' ? {} : { security: [ref('components/securitySchemes/mqttLogin')] }),
          bindings: mqttBinding(channel),
          messages: messageRefs,
        };
      }
    }
  }

  // /live: what a client sends is read before its transforms; what the server sends is as written.
  const liveMessages: JsonObject = {};
  for (const [frames, io] of [[LIVE_CLIENT_FRAMES, 'input'], [LIVE_SERVER_FRAMES, 'output']] as const) {
    for (const { type, schema } of frames) {
      const name = `live${capital(type)}`;
      messages[name] = { name, title: `/live ${type}`, ...(LIVE_FRAME_DOCS[type] === undefined ? {} : { summary: LIVE_FRAME_DOCS[type] }), contentType: 'application/json', payload: payload(schema, io) };
      liveMessages[name] = ref(`components/messages/${name}`);
    }
  }
  channels.live = {
    address: '/live',
    title: 'The display\'s live feed',
    description:
      `A WebSocket on the display's HTTP port, subprotocol \`${LIVE_SUBPROTOCOL}\`; JSON text frames, a client's at most ${LIVE_LIMITS.maxInboundFrameBytes} bytes. ` +
      `The viewer token (SENSORPIPE_VIEWER_TOKEN, when set) travels as \`Authorization: Bearer\`, or from a browser as a second subprotocol \`${TOKEN_SUBPROTOCOL_PREFIX}<base64url of the token>\`, or \`?token=\`. ` +
      `Close codes: ${Object.entries(LIVE_CLOSE).map(([name, code]) => `${code} ${name}`).join(', ')}.`,
    servers: [ref('servers/display')],
    messages: liveMessages,
  };
  operations.liveClientSendsFrames = {
    action: 'send',
    channel: ref('channels/live'),
    title: 'A /live client sends subscriptions',
    security: [ref('components/securitySchemes/viewerToken'), ref('components/securitySchemes/viewerTokenQuery')],
    messages: LIVE_CLIENT_FRAMES.map(({ type }) => ref(`channels/live/messages/live${capital(type)}`)),
  };
  operations.liveClientReceivesFrames = {
    action: 'receive',
    channel: ref('channels/live'),
    title: 'A /live client receives readings, histories and statuses',
    security: [ref('components/securitySchemes/viewerToken'), ref('components/securitySchemes/viewerTokenQuery')],
    messages: LIVE_SERVER_FRAMES.map(({ type }) => ref(`channels/live/messages/live${capital(type)}`)),
  };

  return {
    asyncapi: '3.0.0',
    info: {
      title: 'sensorpipe messages',
      version: '1',
      description:
        'The MQTT topics of sensorpipe (devices → broker → ingest → display and alerts) and the display\'s /live WebSocket. ' +
        'Every MQTT connection logs in: a device as its id with its own password (a device may only publish under its own topics), a service as svc:ingest, svc:display, svc:alerts or svc:admin. ' +
        'Topics are built in core/topics.ts; payloads are the zod schemas of core/ (core/PROTOCOL.md for signing). Error codes: docs/ERRORS.md.',
    },
    servers: {
      mqtt: { host: 'localhost:1883', protocol: 'mqtt', protocolVersion: '3.1.1', description: 'The broker\'s TCP listener (SENSORPIPE_MQTT_PORT); TLS on SENSORPIPE_MQTT_TLS_PORT when a certificate is set.', security: [ref('components/securitySchemes/mqttLogin')] },
      'mqtt-ws': { host: 'localhost:8083', pathname: '/mqtt', protocol: 'ws', description: 'MQTT over WebSocket (SENSORPIPE_MQTT_WS_PORT).', security: [ref('components/securitySchemes/mqttLogin')] },
      display: {
        host: 'localhost:8080',
        protocol: 'ws',
        description: 'The display\'s HTTP port (SENSORPIPE_HTTP_PORT); its HTTP API is described by /api/openapi.json.',
        security: [ref('components/securitySchemes/viewerToken'), ref('components/securitySchemes/viewerTokenQuery')],
      },
    },
    channels,
    operations,
    components: {
      schemas,
      messages,
      parameters: { deviceId: { description: `A device id: a lowercase slug (${String(LIMITS.deviceIdPattern)}), at most ${LIMITS.deviceIdMaxLength} characters.` } },
      securitySchemes: {
        mqttLogin: { type: 'userPassword', description: 'MQTT user name and password: a device id and its password, or svc:<service> and that service\'s password (SENSORPIPE_*_PASSWORD).' },
        viewerToken: { type: 'http', scheme: 'bearer', description: 'The viewer token (SENSORPIPE_VIEWER_TOKEN), when one is set.' },
        viewerTokenQuery: { type: 'httpApiKey', in: 'query', name: 'token', description: 'The viewer token as a URL parameter: a last resort.' },
      },
    },
  };
}

export const asyncApiText = (): string => documentText(asyncApi());

/** True when core/asyncapi.json is what the code generates now. */
export const asyncApiFileCurrent = (): Promise<boolean> => generatedFileCurrent(ASYNCAPI_PATH, asyncApiText());

await writeWhenRun(import.meta.url, ASYNCAPI_PATH, asyncApiText);

/**
 * The ingest baseline: a verification-free pass-through. Same broker subscription (svc:ingest, QoS 1,
 * persistent session), same batching (5,000 points or 100 ms) and the same store adapter as ingest, and
 * the same live-feed republish — but no schema check, no registry, no signature, no seq memory, no spool,
 * and MQTT.js acknowledges each message as soon as it is handed over (not once it is durable). What
 * ingest costs on top of this is the price of trusting the data and losing none of it.
 *
 *   SENSORPIPE_* as for `sensorpipe ingest`; node --import tsx bench/passthrough-ingest.ts
 */
import { createServer } from 'node:http';
import mqtt from 'mqtt';
import { configSpecs, parseConfig } from '../core/config.ts';
import { topics } from '../core/topics.ts';
import { openStore, type StorePoint } from '../store/index.ts';

const { config } = parseConfig(configSpecs.ingest, { argv: [] });
const store = await openStore(config);
let accepted = 0;
let batch: StorePoint[] = [];
let timer: NodeJS.Timeout | undefined;
let writing: Promise<unknown> = Promise.resolve();
const flush = () => {
  clearTimeout(timer);
  timer = undefined;
  const points = batch;
  batch = [];
  if (points.length > 0) writing = writing.then(() => store.write(points));
};

const client = mqtt.connect(config.mqttUrl, { clientId: config.ingestClientId, username: 'svc:ingest', password: config.ingestPassword, clean: false });
client.on('connect', () => client.subscribe(topics.allTelemetry, { qos: 1 }));
client.on('message', (_topic, payload) => {
  let message: { device: string; readings: { seq: number; ts: number; values: Record<string, number> }[] };
  try {
    message = JSON.parse(payload.toString()) as typeof message;
  } catch {
    return;
  }
  if (!Array.isArray(message.readings)) return; // not telemetry (the pass-through checks nothing else)
  client.publish(topics.verified(message.device), JSON.stringify({ v: 1, device: message.device, readings: message.readings, meta: {}, verifiedAt: Date.now() }));
  for (const r of message.readings) for (const [metric, value] of Object.entries(r.values)) batch.push({ device: message.device, metric, ts: r.ts, value });
  accepted += message.readings.length;
  if (batch.length >= config.batchMaxPoints) flush();
  else timer ??= setTimeout(flush, config.batchMaxDelayMs);
});

// The counter bench/ingest.ts waits on, under ingest's metric name.
createServer((_request, response) => response.end(`sensorpipe_ingest_accepted_readings_total ${accepted}\n`)).listen(config.ingestMetricsPort, '127.0.0.1');
process.on('SIGTERM', () => {
  flush();
  void writing.then(() => store.close()).then(() => process.exit(0));
});

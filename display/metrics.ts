/** The display's Prometheus metrics, on one registry per display instance (served at /metrics). */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { collectProcessMetrics } from '../core/ops-http.ts';

export function createDisplayMetrics() {
  const registry = new Registry();
  collectProcessMetrics(registry);
  const registers = [registry];
  /** What the live hub reports when /metrics is scraped (read then, never on the fan-out's hot path). */
  const live = { unsentBytes: (): { total: number; max: number } => ({ total: 0, max: 0 }) };
  return {
    registry,
    live,
    liveUnsentBytes: new Gauge({ name: 'sensorpipe_display_live_unsent_bytes', help: 'Bytes queued to /live clients and not yet handed to their sockets, all clients together.', registers, collect() { this.set(live.unsentBytes().total); } }),
    liveUnsentBytesMax: new Gauge({ name: 'sensorpipe_display_live_unsent_bytes_max', help: 'The largest backlog of one /live client, in bytes (bounded by SENSORPIPE_LIVE_SLOW_BYTES plus one frame).', registers, collect() { this.set(live.unsentBytes().max); } }),
    connectionsRefused: new Counter({ name: 'sensorpipe_display_connections_refused_total', help: 'Connections to the display\'s port closed on arrival, by reason.', labelNames: ['reason'] as const, registers }),
    liveClients: new Gauge({ name: 'sensorpipe_display_live_clients', help: 'Open /live WebSocket clients.', registers }),
    liveRefused: new Counter({ name: 'sensorpipe_display_live_refused_total', help: '/live upgrades refused, by code.', labelNames: ['code'] as const, registers }),
    liveFrames: new Counter({ name: 'sensorpipe_display_live_frames_total', help: 'Frames sent to /live clients.', registers }),
    liveDelivered: new Counter({ name: 'sensorpipe_display_live_readings_delivered_total', help: 'Readings delivered to /live clients (one per client).', registers }),
    liveConflated: new Counter({ name: 'sensorpipe_display_live_readings_conflated_total', help: 'Readings a slow client did not get (a newer value of the same metric replaced it).', registers }),
    liveDisconnects: new Counter({ name: 'sensorpipe_display_live_disconnects_total', help: '/live clients disconnected by the server, by reason.', labelNames: ['reason'] as const, registers }),
    liveBadFrames: new Counter({ name: 'sensorpipe_display_live_bad_frames_total', help: 'Frames from clients refused, by code.', labelNames: ['code'] as const, registers }),
    feedMessages: new Counter({ name: 'sensorpipe_display_feed_messages_total', help: 'MQTT messages received from the pipeline, by kind.', labelNames: ['kind'] as const, registers }),
    alertStatesInvalid: new Counter({ name: 'sensorpipe_display_alert_states_invalid_total', help: 'Alert state messages (alerts/{device}) ignored, by reason: PAYLOAD_TOO_LARGE, PAYLOAD_INVALID (not the schema of core/alerts.ts), TOPIC_DEVICE_MISMATCH, DEVICE_UNKNOWN (not in the registry).', labelNames: ['reason'] as const, registers }),
    alertDevices: new Gauge({ name: 'sensorpipe_display_alert_devices', help: 'Devices whose alert state the display holds (from the retained alerts/{device} messages).', registers }),
    feedInvalid: new Counter({ name: 'sensorpipe_display_feed_invalid_total', help: 'MQTT messages dropped as malformed, by kind.', labelNames: ['kind'] as const, registers }),
    historyLoads: new Gauge({ name: 'sensorpipe_display_history_loads', help: 'History loads reading the store now (API readings requests and /live subscriptions\' histories together; at most SENSORPIPE_HISTORY_MAX_CONCURRENT).', registers }),
    historyWaiting: new Gauge({ name: 'sensorpipe_display_history_waiting', help: 'History loads waiting for a free slot.', registers }),
    historyRefused: new Counter({ name: 'sensorpipe_display_history_refused_total', help: 'History loads refused with SERVER_BUSY, by how they were asked for (http, live) and why (queue_full, timeout).', labelNames: ['via', 'reason'] as const, registers }),
    httpRequests: new Counter({ name: 'sensorpipe_display_http_requests_total', help: 'HTTP requests, by route and status.', labelNames: ['route', 'status'] as const, registers }),
    httpSeconds: new Histogram({ name: 'sensorpipe_display_http_seconds', help: 'HTTP request latency, by route.', labelNames: ['route'] as const, buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registers }),
  };
}

export type DisplayMetrics = ReturnType<typeof createDisplayMetrics>;

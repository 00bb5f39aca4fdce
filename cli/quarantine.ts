/**
 * `sensorpipe quarantine list|replay`: shows what ingest rejected and why, and sends messages whose
 * cause may have gone (a device provisioned after it first spoke) through the pipeline again, by
 * republishing them on their telemetry topic as the admin account. They are verified from scratch.
 */
import { join } from 'node:path';
import mqtt from 'mqtt';
import { z } from 'zod';
import { bool, commonOptions, helpText, mqttClientOptions, optionalText, parseConfig, serviceAccountOptions } from '../core/config.ts';
import { REJECT_REASONS, SensorpipeError } from '../core/errors.ts';
import { parseTopic } from '../core/topics.ts';
import { readQuarantine } from '../core/quarantine-file.ts';
import type { Command } from './command.ts';

const specs = {
  ...commonOptions,
  ...mqttClientOptions,
  adminPassword: serviceAccountOptions.adminPassword,
  reason: { env: 'SENSORPIPE_QUARANTINE_REASON', flag: 'reason', schema: z.enum(REJECT_REASONS).optional(), doc: `Only entries with this reason (${REJECT_REASONS.join(', ')}). replay defaults to DEVICE_UNKNOWN.` },
  device: { env: 'SENSORPIPE_QUARANTINE_DEVICE', flag: 'device', schema: optionalText, doc: 'Only entries of this device.' },
  json: { env: 'SENSORPIPE_JSON', flag: 'json', schema: bool, default: 'false', switch: true, doc: 'Print JSON instead of text.' },
};

const USAGE = `Usage: sensorpipe quarantine <list|replay> [options]

  list     rejected messages, oldest first, with reason, device, time and payload
  replay   republish complete quarantined messages (default: reason DEVICE_UNKNOWN) for ingest to verify again`;

export const quarantineCommand: Command = {
  summary: 'list rejected messages, or send them through ingest again',
  async run(argv) {
    const { config, positionals, help } = parseConfig(specs, { argv });
    const [action] = positionals;
    if (help || action === undefined) {
      process.stdout.write(`${helpText(USAGE, specs)}\n`);
      return help ? 0 : 2;
    }
    const dir = join(config.dataDir, 'ingest', 'quarantine');
    if (action === 'list') {
      const { entries, evicted } = await readQuarantine(dir, { reason: config.reason, device: config.device });
      if (config.json) {
        process.stdout.write(`${JSON.stringify({ entries, evicted })}\n`);
      } else {
        for (const e of entries) {
          process.stdout.write(`${new Date(e.at).toISOString()}  ${e.reason.padEnd(24)} ${(e.device ?? '-').padEnd(20)} ${e.message}\n    ${e.encoding === 'base64' ? '(base64) ' : ''}${e.payload.slice(0, 200)}${e.truncated ? ' …(truncated)' : ''}\n`);
        }
        process.stdout.write(`${entries.length} entries${evicted > 0 ? `; ${evicted} older ones evicted` : ''}\n`);
      }
      return 0;
    }
    if (action === 'replay') {
      const reason = config.reason ?? 'DEVICE_UNKNOWN';
      const { entries } = await readQuarantine(dir, { reason, device: config.device });
      const replayable = entries.filter((e) => !e.truncated && e.encoding === 'utf8' && parseTopic(e.topic)?.kind === 'telemetry');
      if (replayable.length === 0) {
        process.stdout.write(`nothing to replay (reason ${reason})\n`);
        return 0;
      }
      if (config.adminPassword === undefined) throw new SensorpipeError('CONFIG_INVALID', 'replay publishes as the admin account: set SENSORPIPE_ADMIN_PASSWORD or --admin-password');
      const client = await mqtt.connectAsync(config.mqttUrl, { username: 'svc:admin', password: config.adminPassword, clientId: `sensorpipe-replay-${process.pid}`, reconnectPeriod: 0 });
      try {
        for (const entry of replayable) await client.publishAsync(entry.topic, entry.payload, { qos: 1 });
      } finally {
        await client.endAsync();
      }
      process.stdout.write(config.json ? `${JSON.stringify({ replayed: replayable.length, skipped: entries.length - replayable.length })}\n` : `replayed ${replayable.length} messages (${entries.length - replayable.length} skipped: truncated or not telemetry)\n`);
      return 0;
    }
    throw new SensorpipeError('CONFIG_INVALID', `unknown quarantine action "${action}" (list, replay)`);
  },
};

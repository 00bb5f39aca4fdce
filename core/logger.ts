/**
 * pino JSON logs. One root logger per process, a child per component (and per device or request
 * further down). Secrets, tokens, keys and signatures are redacted wherever they appear in a log object.
 */
import { pino, type Logger, type LevelWithSilent } from 'pino';

const SECRET_KEYS = ['password', 'secret', 'token', 'sig', 'signature', 'key', 'privateKey', 'mqttPassword', 'authorization', 'cookie'];

/** Redaction paths: the key at the top level and one or two levels down. */
export const REDACT_PATHS = SECRET_KEYS.flatMap((k) => [k, `*.${k}`, `*.*.${k}`]);

export type { Logger };

export function createLogger(options: { level?: LevelWithSilent; name?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  return pino(
    {
      name: options.name ?? 'sensorpipe',
      level: options.level ?? 'info',
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    options.destination ?? process.stderr,
  );
}

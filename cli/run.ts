/**
 * Shared wiring for the long-running commands: logger, graceful shutdown on SIGINT/SIGTERM, and start-up
 * errors a user can act on.
 */
import type { LevelWithSilent } from 'pino';
import { port, type OptionSpec } from '../core/config.ts';
import { SensorpipeError } from '../core/errors.ts';
import { createLogger, type Logger } from '../core/logger.ts';

/**
 * The process's root logger, for the components that add their own `component` binding (broker, ingest,
 * display). (A child of a child that binds `component` again would no longer write the key twice: core/logger.ts
 * merges bindings, the innermost winning.)
 */
export function rootLogger(level: LevelWithSilent): Logger {
  return createLogger({ level });
}

/** A logger for a command's own lines (and for code that adds no `component` of its own). */
export function processLogger(level: LevelWithSilent, component: string): Logger {
  return rootLogger(level).child({ component });
}

/**
 * Runs `stop` once on SIGINT or SIGTERM and resolves with the exit code: 0 after a clean stop, 1 if
 * stopping failed or took longer than `graceMs` (a second signal also forces the exit).
 */
export function untilSignal(stop: () => Promise<void>, logger: Logger, graceMs = 10_000): Promise<number> {
  return new Promise((resolve) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) {
        logger.warn({ signal }, 'second signal: exiting now');
        resolve(1);
        return;
      }
      stopping = true;
      logger.info({ signal }, 'shutting down');
      const timer = setTimeout(() => {
        logger.error({ graceMs }, 'shutdown took too long');
        resolve(1);
      }, graceMs);
      timer.unref();
      stop().then(
        () => {
          clearTimeout(timer);
          resolve(0);
        },
        (err: unknown) => {
          clearTimeout(timer);
          logger.error({ err }, 'shutdown failed');
          resolve(1);
        },
      );
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

/**
 * A listen that failed because its port is taken (EADDRINUSE) or needs privileges (EACCES), as a
 * CONFIG_INVALID that names the option setting that port and how to change it: what a user who already
 * runs something on 1883 or 8080 needs to read. Any other error is returned unchanged.
 */
export function explainListenError(err: unknown, specs: Record<string, OptionSpec>, config: Record<string, unknown>): unknown {
  const e = err as (NodeJS.ErrnoException & { port?: unknown; address?: unknown }) | undefined;
  if (e?.syscall !== 'listen' || (e.code !== 'EADDRINUSE' && e.code !== 'EACCES') || typeof e.port !== 'number') return err;
  const taken = e.port;
  const options = Object.entries(specs).filter(([key, spec]) => spec.schema === port && config[key] === taken).map(([, spec]) => spec);
  const first = options[0];
  const where = `port ${taken}${typeof e.address === 'string' ? ` on ${e.address}` : ''}`;
  const what = options.length > 0 ? ` (${options.map((s) => `${s.env} / --${s.flag}`).join(', or ')})` : '';
  const why = e.code === 'EADDRINUSE' ? 'is already in use by another program' : 'may not be opened by this user';
  const fix = first === undefined ? '' : ` Stop that program, or choose another port, e.g. ${first.env}=${taken === 65535 ? taken - 1 : taken + 1} (0: any free port).`;
  return new SensorpipeError('CONFIG_INVALID', `${where}${what} ${why}.${fix}`, { variable: first?.env, flag: first?.flag, port: taken }, { cause: err });
}

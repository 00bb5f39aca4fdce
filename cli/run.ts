/**
 * Shared wiring for the long-running commands: logger, graceful shutdown on SIGINT/SIGTERM.
 */
import type { LevelWithSilent } from 'pino';
import { createLogger, type Logger } from '../core/logger.ts';

export function processLogger(level: LevelWithSilent, component: string): Logger {
  return createLogger({ level }).child({ component });
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

/**
 * `sensorpipe ingest`: the ingest component as its own process. Connects to the broker as svc:ingest,
 * writes to the configured store, serves /metrics and /healthz.
 */
import { configSpecs, helpText, parseConfig, registryPathOf } from '../core/config.ts';
import { startIngest } from '../ingest/index.ts';
import { openStore } from '../store/index.ts';
import type { Command } from './command.ts';
import { explainListenError, rootLogger, untilSignal } from './run.ts';

export const ingestCommand: Command = {
  summary: 'run ingest: verify telemetry and write it to the store',
  async run(argv) {
    const { config, help } = parseConfig(configSpecs.ingest, { argv });
    if (help) {
      process.stdout.write(`${helpText('Usage: sensorpipe ingest [options]', configSpecs.ingest)}\n`);
      return 0;
    }
    const root = rootLogger(config.logLevel);
    // This command's own lines carry the component they are about; startIngest adds it to its own.
    const logger = root.child({ component: 'ingest' });
    const store = await openStore(config, { logger: root.child({ component: 'store' }) });
    const ingest = await startIngest({ config, registryPath: registryPathOf(config), store, logger: root }).catch((err: unknown) => {
      throw explainListenError(err, configSpecs.ingest, config);
    });
    logger.info({ mqtt: config.mqttUrl, store: store.kind, metricsPort: ingest.metricsPort }, 'ingest running');
    return untilSignal(async () => {
      await ingest.close();
      await store.close();
    }, logger);
  },
};

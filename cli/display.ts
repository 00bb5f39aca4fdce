/**
 * `sensorpipe display`: the display as its own process. Connects to the broker as svc:display, reads
 * the configured store, serves the dashboard, the API and /live.
 */
import { configSpecs, helpText, parseConfig, registryPathOf } from '../core/config.ts';
import { startDisplay } from '../display/index.ts';
import { openStore } from '../store/index.ts';
import type { Command } from './command.ts';
import { explainListenError, rootLogger, untilSignal } from './run.ts';

export const displayCommand: Command = {
  summary: 'run the display: dashboard, history API and the /live WebSocket feed',
  async run(argv) {
    const { config, help } = parseConfig(configSpecs.display, { argv });
    if (help) {
      process.stdout.write(`${helpText('Usage: sensorpipe display [options]', configSpecs.display)}\n`);
      return 0;
    }
    const root = rootLogger(config.logLevel);
    // startDisplay adds `component: 'display'` to its own lines; this command's lines carry the same.
    const logger = root.child({ component: 'display' });
    const store = await openStore(config, { logger: root.child({ component: 'store' }) });
    const display = await startDisplay({ config, registryPath: registryPathOf(config), store, logger: root }).catch((err: unknown) => {
      throw explainListenError(err, configSpecs.display, config);
    });
    logger.info({ url: display.url, mqtt: config.mqttUrl, store: store.kind }, 'display running');
    return untilSignal(async () => {
      await display.close();
      await store.close();
    }, logger);
  },
};

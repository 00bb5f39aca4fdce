/**
 * `sensorpipe broker`: the MQTT broker as its own process. Devices log in with their registry
 * credentials, services with the svc:* accounts; /metrics and /healthz on the metrics port.
 */
import { configSpecs, helpText, parseConfig, registryPathOf } from '../core/config.ts';
import { startBroker } from '../broker/index.ts';
import type { Command } from './command.ts';
import { explainListenError, rootLogger, untilSignal } from './run.ts';

export const brokerCommand: Command = {
  summary: 'run the MQTT broker (TCP, WebSocket /mqtt, TLS) with device authentication',
  async run(argv) {
    const { config, help } = parseConfig(configSpecs.broker, { argv });
    if (help) {
      process.stdout.write(`${helpText('Usage: sensorpipe broker [options]', configSpecs.broker)}\n`);
      return 0;
    }
    const root = rootLogger(config.logLevel);
    // startBroker adds `component: 'broker'` to its own lines; this command's lines carry the same.
    const logger = root.child({ component: 'broker' });
    const broker = await startBroker({ config, registryPath: registryPathOf(config), logger: root }).catch((err: unknown) => {
      throw explainListenError(err, configSpecs.broker, config);
    });
    logger.info({ urls: broker.urls }, 'broker running');
    // The broker closes within 5 s by itself; the grace period only catches a hang.
    return untilSignal(() => broker.close(), logger, 8_000);
  },
};

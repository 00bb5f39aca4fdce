/**
 * `sensorpipe alerts`: the alerts component as its own process. Connects to the broker as svc:alerts,
 * follows the rules file and the registry, logs alert changes, publishes alerts/{device} and calls
 * webhooks; serves /api/alerts and its ops endpoints on its own port.
 */
import { configSpecs, helpText, parseConfig, registryPathOf } from '../core/config.ts';
import { startAlerts } from '../alerts/index.ts';
import type { Command } from './command.ts';
import { explainListenError, rootLogger, untilSignal } from './run.ts';

export const alertsCommand: Command = {
  summary: 'run the alerts: rules on the live feed, alert state on alerts/{device}, webhooks, /api/alerts',
  async run(argv) {
    const { config, help } = parseConfig(configSpecs.alerts, { argv });
    if (help) {
      process.stdout.write(`${helpText('Usage: sensorpipe alerts [options]', configSpecs.alerts)}\n`);
      return 0;
    }
    const root = rootLogger(config.logLevel);
    const logger = root.child({ component: 'alerts' });
    const alerts = await startAlerts({ config, registryPath: registryPathOf(config), logger: root }).catch((err: unknown) => {
      throw explainListenError(err, configSpecs.alerts, config);
    });
    logger.info({ url: alerts.url, mqtt: config.mqttUrl, rules: alerts.rulesPath }, 'alerts running');
    return untilSignal(() => alerts.close(), logger);
  },
};

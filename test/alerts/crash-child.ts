/**
 * The child process of crash.test.ts: the real `sensorpipe alerts` command, killed with SIGKILL at the
 * moment its first event is in the alert log (appended, fsynced) and about to be queued for a webhook:
 * the crash window between the two appends. The kill is the real thing; only its timing is arranged,
 * by standing in for the outbox's append with the kill itself.
 */
import { WebhookOutbox } from '../../alerts/outbox.ts';
import { alertsCommand } from '../../cli/alerts.ts';

WebhookOutbox.prototype.enqueue = function crashInsteadOfEnqueue(): Promise<void> {
  process.kill(process.pid, 'SIGKILL');
  return new Promise(() => undefined);
};

process.exitCode = await alertsCommand.run(process.argv.slice(2));

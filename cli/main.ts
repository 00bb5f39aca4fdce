/**
 * The `sensorpipe` command: parses the sub-command and hands over to it. Each sub-command wires
 * components into a process; the components themselves never import each other.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isSensorpipeError } from '../core/errors.ts';
import { adminCommand } from './admin.ts';
import { alertsCommand } from './alerts.ts';
import { brokerCommand } from './broker.ts';
import type { Command } from './command.ts';
import { devicesCommand } from './devices.ts';
import { displayCommand } from './display.ts';
import { ingestCommand } from './ingest.ts';
import { quarantineCommand } from './quarantine.ts';
import { registryCommand } from './registry.ts';
import { signCommand } from './sign.ts';
import { simCommand } from './sim.ts';
import { startCommand } from './start.ts';


const commands: Record<string, Command> = {
  admin: adminCommand,
  alerts: alertsCommand,
  broker: brokerCommand,
  devices: devicesCommand,
  display: displayCommand,
  ingest: ingestCommand,
  quarantine: quarantineCommand,
  registry: registryCommand,
  sign: signCommand,
  sim: simCommand,
  start: startCommand,
};

/**
 * The version in sensorpipe's package.json: the nearest one named `sensorpipe` above this file, so the
 * answer is the same whether this runs from the sources (cli/) or from compiled output a level deeper.
 */
export function packageVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    try {
      const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown; version?: unknown };
      if (manifest.name === 'sensorpipe' && typeof manifest.version === 'string') return manifest.version;
    } catch {
      // No package.json here (or not ours): look one level up.
    }
    const parent = dirname(dir);
    if (parent === dir) return 'unknown';
    dir = parent;
  }
}

function usage(): string {
  const width = Math.max(...Object.keys(commands).map((name) => name.length));
  return [
    'Usage: sensorpipe <command> [options]',
    '',
    'Commands:',
    ...Object.entries(commands).map(([name, command]) => `  ${name.padEnd(width)}  ${command.summary}`),
    '',
    'Options:',
    '  -V, --version  Print the version and exit',
    '  -h, --help     Print this help and exit',
    '',
    'Run "sensorpipe <command> --help" for the options of a command.',
  ].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${usage()}\n`);
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === '-V') {
    process.stdout.write(`${packageVersion()}\n`);
    return 0;
  }
  const command = commands[name];
  if (command === undefined) {
    process.stderr.write(`sensorpipe: unknown command "${name}"\n\n${usage()}\n`);
    return 2;
  }
  return command.run(rest);
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (err) {
  if (!isSensorpipeError(err)) throw err;
  process.stderr.write(`sensorpipe: ${err.code}: ${err.message}\n`);
  // Exit now rather than when the event loop empties: a component that failed half-way through starting
  // (its port was taken) may leave a timer or a reconnecting client behind, and a command that failed
  // must not keep running. (stderr is synchronous for files, pipes and terminals on Linux.)
  process.exit(1);
}

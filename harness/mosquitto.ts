/**
 * Debian's Mosquitto on a free loopback port: a second, independent MQTT broker (MQTT 3.1.1 and 5,
 * shared subscriptions), for tests that must work with any broker. Anonymous access unless a
 * password file is asked for.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { freePort } from './ports.ts';
import { tempDir } from './tmp.ts';

export interface MosquittoServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`mosquitto did not listen on ${port} within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export async function startMosquitto(options: { users?: Record<string, string> } = {}): Promise<MosquittoServer> {
  const dir = await tempDir('sensorpipe-mosquitto-');
  const port = await freePort();
  const lines = ['user root', 'persistence false', `listener ${port} 127.0.0.1`, 'log_dest stderr', 'log_type error'];
  if (options.users) {
    const passwords = join(dir.path, 'passwd');
    for (const [index, [user, password]] of Object.entries(options.users).entries()) {
      execFileSync('mosquitto_passwd', [...(index === 0 ? ['-c'] : []), '-b', passwords, user, password]);
    }
    lines.push(`password_file ${passwords}`, 'allow_anonymous false');
  } else {
    lines.push('allow_anonymous true');
  }
  const config = join(dir.path, 'mosquitto.conf');
  await writeFile(config, `${lines.join('\n')}\n`);
  const child: ChildProcess = spawn('mosquitto', ['-c', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let output = '';
  child.stderr?.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-2000)));
  try {
    await waitForPort(port, 10_000);
  } catch (err) {
    child.kill('SIGKILL');
    throw new Error(`${(err as Error).message}\n${output}`);
  }
  return {
    url: `mqtt://127.0.0.1:${port}`,
    port,
    close: async () => {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        await exited;
      }
      await dir.remove();
    },
  };
}

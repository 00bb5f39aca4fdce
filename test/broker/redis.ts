/** A real redis-server (Debian package) on a free loopback port, with nothing saved to disk. */
import { spawn } from 'node:child_process';
import { freePort } from '../../harness/ports.ts';
import { within } from './raw.ts';

export interface RedisServer {
  url: string;
  stop(): Promise<void>;
}

export async function startRedis(dir: string): Promise<RedisServer> {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  await within(new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`redis-server exited (${code}): ${output}`)));
    const check = () => (output.includes('Ready to accept connections') ? resolve() : setTimeout(check, 50));
    check();
  }), 'redis-server to start', 20_000);
  return {
    url: `redis://127.0.0.1:${port}`,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

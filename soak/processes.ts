/**
 * The soak's child processes: one `node cli/bin.js <command>` each, with its output appended to a log
 * file, a readiness check, and a record of every start and of every exit nobody asked for (a crash).
 * Chaos stops and starts them through here, so an exit it caused is never counted as a crash.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const CLI_PATH = fileURLToPath(new URL('../cli/bin.js', import.meta.url));

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ProcessOptions {
  name: string;
  /** Arguments after `node cli/bin.js`. */
  args: string[];
  env: Record<string, string>;
  logPath: string;
  /** Resolves once the process serves; a line of its output (stderr or stdout) or an HTTP URL answering 2xx. */
  ready: { log: RegExp } | { url: string };
  readyTimeoutMs?: number;
}

export class ManagedProcess {
  readonly name: string;
  /** Start times (ms), one per start; the last is the current life. */
  readonly starts: number[] = [];
  /** Exits that no stop() or kill() asked for. */
  readonly crashes: (Exit & { at: number; logTail: string })[] = [];
  private child: ChildProcess | undefined;
  private exited: Promise<Exit> | undefined;
  private expectingExit = false;
  private stdout = '';
  private tail = '';
  private readonly log: WriteStream;

  constructor(private readonly options: ProcessOptions) {
    this.name = options.name;
    this.log = createWriteStream(options.logPath, { flags: 'a' });
  }

  get pid(): number | undefined {
    return this.child?.exitCode === null && this.child.signalCode === null ? this.child.pid : undefined;
  }

  get running(): boolean {
    return this.pid !== undefined;
  }

  /** Everything the current life printed on stdout (the simulator's summary). */
  get output(): string {
    return this.stdout;
  }

  async start(): Promise<void> {
    if (this.running) throw new Error(`${this.name} is already running`);
    this.stdout = '';
    this.expectingExit = false;
    this.log.write(`\n==== soak: starting ${this.name} at ${new Date().toISOString()}\n`);
    const child = spawn(process.execPath, [CLI_PATH, ...this.options.args], { env: { ...process.env, ...this.options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    this.starts.push(Date.now());
    let seen = '';
    let onLine: (() => void) | undefined;
    const take = (chunk: Buffer, stdout: boolean) => {
      const text = chunk.toString();
      this.log.write(text);
      if (stdout) this.stdout += text;
      this.tail = (this.tail + text).slice(-4000);
      seen = (seen + text).slice(-20_000);
      onLine?.();
    };
    child.stdout!.on('data', (chunk: Buffer) => take(chunk, true));
    child.stderr!.on('data', (chunk: Buffer) => take(chunk, false));
    this.exited = new Promise<Exit>((resolve) => {
      child.once('exit', (code, signal) => {
        this.log.write(`\n==== soak: ${this.name} exited (code ${code}, signal ${signal}) at ${new Date().toISOString()}\n`);
        if (!this.expectingExit) this.crashes.push({ code, signal, at: Date.now(), logTail: this.tail.slice(-1500) });
        resolve({ code, signal });
      });
    });

    const timeoutMs = this.options.readyTimeoutMs ?? 30_000;
    const deadline = Date.now() + timeoutMs;
    const ready = this.options.ready;
    const died = this.exited.then((exit) => {
      throw new Error(`${this.name} exited (code ${exit.code}, signal ${exit.signal}) before it was ready:\n${this.tail.slice(-1500)}`);
    });
    died.catch(() => {});
    const isReady = 'log' in ready
      ? new Promise<void>((resolve) => {
          onLine = () => {
            if (ready.log.test(seen)) {
              onLine = undefined;
              resolve();
            }
          };
          onLine();
        })
      : (async () => {
          while (Date.now() < deadline && this.running) {
            if (await fetch(ready.url, { signal: AbortSignal.timeout(1000) }).then((r) => r.ok, () => false)) return;
            await new Promise((resolve) => setTimeout(resolve, 100));
          }
          throw new Error(`${this.name}: ${ready.url} did not answer`);
        })();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${this.name} was not ready within ${timeoutMs} ms:\n${this.tail.slice(-1500)}`)), timeoutMs);
    });
    try {
      await Promise.race([isReady, died, timeout]);
    } finally {
      clearTimeout(timer);
      onLine = undefined;
    }
  }

  /** Sends a signal and waits for the exit (SIGKILL after `graceMs`). Not a crash. */
  async kill(signal: NodeJS.Signals, graceMs = 15_000): Promise<Exit> {
    const child = this.child;
    const exited = this.exited;
    if (!child || !exited || !this.running) return { code: child?.exitCode ?? null, signal: child?.signalCode ?? null };
    this.expectingExit = true;
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    const exit = await exited;
    clearTimeout(timer);
    return exit;
  }

  /** A graceful stop: SIGTERM (or the given signal), then the exit. */
  stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<Exit> {
    return this.kill(signal);
  }

  async closeLog(): Promise<void> {
    await new Promise<void>((resolve) => this.log.end(resolve));
  }
}

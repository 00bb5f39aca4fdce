/**
 * JSON log lines carry no key twice. A display started in-process as `sensorpipe display` starts it
 * (its logger a child with `component: 'display'`, to which startDisplay adds its own `component`, and
 * per-request children below that) writes real lines; each is read with core/decode.ts's check that
 * refuses a key given twice. pino itself writes duplicates in that case, so this fails without the
 * merging in core/logger.ts.
 */
import { request as httpRequest } from 'node:http';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { everyMemberKept } from '../../core/decode.ts';
import { createLogger } from '../../core/logger.ts';
import { startDisplay, type RunningDisplay } from '../../display/index.ts';
import { displayConfig, startTestPipeline, type TestPipeline } from '../../harness/pipeline.ts';

/** A log destination that keeps every line. */
function captureLines(): { stream: Writable; lines: string[] } {
  const lines: string[] = [];
  let pending = '';
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      pending += chunk.toString('utf8');
      const parts = pending.split('\n');
      pending = parts.pop() ?? '';
      lines.push(...parts.filter((l) => l !== ''));
      done();
    },
  });
  return { stream, lines };
}

/** A log line as an object, or an error naming the line if a key is given twice (or it is no JSON). */
function readLogLine(line: string): Record<string, unknown> {
  const value = JSON.parse(line) as Record<string, unknown>;
  if (!everyMemberKept(line, value)) throw new Error(`a key appears twice in: ${line}`);
  return value;
}

let pipeline: TestPipeline;
let display: RunningDisplay;
const captured = captureLines();

beforeAll(async () => {
  pipeline = await startTestPipeline({ devices: 1 });
  // As cli/display.ts wires it: a component child of the root, handed to the component.
  const root = createLogger({ level: 'debug', destination: captured.stream });
  display = await startDisplay({
    config: displayConfig(pipeline.broker, pipeline.dir.path),
    registryPath: pipeline.registryPath,
    store: pipeline.store,
    logger: root.child({ component: 'display' }),
  });
  await display.feed.ready;
}, 60_000);
afterAll(async () => {
  await display?.close();
  await pipeline?.close();
});

describe('log lines', () => {
  it('a started display writes no key twice, in its own lines and its per-request ones', async () => {
    // A refused /live upgrade is logged (debug) by the request's own child logger.
    const status = await new Promise<number | undefined>((resolve, reject) => {
      const upgrade = httpRequest({ host: '127.0.0.1', port: display.port, path: '/not-live', headers: { connection: 'upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' } });
      upgrade.on('response', (response) => {
        response.resume();
        resolve(response.statusCode);
      });
      upgrade.on('error', reject);
      upgrade.end();
    });
    expect(status).toBe(404);
    await expect.poll(() => captured.lines.some((l) => l.includes('live upgrade refused'))).toBe(true);
    expect(captured.lines.length).toBeGreaterThan(0);
    const parsed = captured.lines.map(readLogLine);
    expect(parsed.every((line) => line.component === 'display')).toBe(true);
    expect(parsed.find((line) => line.msg === 'live upgrade refused')).toMatchObject({ component: 'display', request: expect.any(Number), method: 'GET', path: '/not-live', code: 'NOT_FOUND' });
  });
});

describe('core/logger.ts', () => {
  const lineOf = (log: (logger: ReturnType<typeof createLogger>) => void): Record<string, unknown> => {
    const { stream, lines } = captureLines();
    log(createLogger({ level: 'debug', destination: stream }));
    expect(lines).toHaveLength(1);
    return readLogLine(lines[0]!);
  };

  it.each([
    ['a child re-binding its parent key: the child value', (l: ReturnType<typeof createLogger>) => l.child({ component: 'a' }).child({ component: 'b' }).info('x'), { component: 'b' }],
    ['three levels deep', (l: ReturnType<typeof createLogger>) => l.child({ component: 'a', device: 'd' }).child({ device: 'e' }).child({ component: 'c' }).info('x'), { component: 'c', device: 'e' }],
    ['a call object repeating a bound key: the call value', (l: ReturnType<typeof createLogger>) => l.child({ component: 'start' }).warn({ component: 'ingest', n: 1 }, 'close failed'), { component: 'ingest', n: 1, msg: 'close failed' }],
    ['a call object naming msg and a message', (l: ReturnType<typeof createLogger>) => l.info({ msg: 'inner' }, 'outer'), { msg: 'outer' }],
    ['a call object naming msg only: it is the message', (l: ReturnType<typeof createLogger>) => l.info({ msg: 'only' }), { msg: 'only' }],
    ['a call object naming level and time', (l: ReturnType<typeof createLogger>) => l.info({ level: 'x', time: 1, pid: 2 }, 'm'), { level: 30, pid: 2 }],
    ['a re-bound secret stays redacted', (l: ReturnType<typeof createLogger>) => l.child({ token: 'a' }).child({ token: 'b' }).info('x'), { token: '[redacted]' }],
  ] as const)('%s', (_name, log, expected) => {
    expect(lineOf(log)).toMatchObject(expected);
  });

  it('the line after a call that repeated a key has its bindings back', () => {
    const { stream, lines } = captureLines();
    const logger = createLogger({ destination: stream }).child({ component: 'start' });
    logger.info({ component: 'other' }, 'one');
    logger.info('two');
    expect(lines.map(readLogLine).map((l) => l.component)).toEqual(['other', 'start']);
  });
});

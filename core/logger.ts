/**
 * pino JSON logs. One root logger per process, a child per component (and per device or request
 * further down). Secrets, tokens, keys and signatures are redacted wherever they appear in a log object.
 *
 * No key appears twice in a line. pino writes a child's bindings after its parent's and a call's object
 * after both, without merging: `root.child({component}).child({component})` or a call `{component}` on
 * such a child would write the key twice (JSON.parse keeps the last one silently; other readers keep the
 * first, or refuse the line). So a child's bindings are merged when it is made, the innermost value
 * winning, and a line whose object repeats a bound key (or one pino writes itself) is written with
 * the object's value only, as pino's own ordering meant it to win.
 */
import { pino, type Logger, type LevelWithSilent } from 'pino';

const SECRET_KEYS = ['password', 'secret', 'token', 'sig', 'signature', 'key', 'privateKey', 'mqttPassword', 'authorization', 'cookie'];

/** Redaction paths: the key at the top level and one or two levels down. */
export const REDACT_PATHS = SECRET_KEYS.flatMap((k) => [k, `*.${k}`, `*.*.${k}`]);

export type { Logger };

/**
 * Keys pino writes on a line itself: `level` and `time` always, `msg` when the call gives a message
 * (without one, an object's `msg` is the message). A call's object must not write them again.
 */
const LINE_KEYS = new Set(['level', 'time']);
const LINE_KEYS_WITH_MESSAGE = new Set(['level', 'time', 'msg']);

// pino.symbols is pino's documented hook for integrations; the bindings of a logger are this JSON text
// (`,"k":v,…`), already serialized and redacted.
const CHINDINGS = pino.symbols.chindingsSym as unknown as symbol;
type WithChindings = Record<symbol, string>;

function parseChindings(text: string): Record<string, unknown> {
  return text === '' ? {} : (JSON.parse(`{${text.slice(1)}}`) as Record<string, unknown>);
}

function serializeChindings(bindings: Record<string, unknown>, omit?: ReadonlySet<string>): string {
  let text = '';
  for (const [key, value] of Object.entries(bindings)) if (omit?.has(key) !== true) text += `,${JSON.stringify(key)}:${JSON.stringify(value)}`;
  return text;
}

/** The keys a logger binds, cached per logger (its bindings text is checked, since setBindings can change it). */
const boundKeys = new WeakMap<object, { text: string; keys: ReadonlySet<string> }>();
function keysBoundBy(logger: Logger): ReadonlySet<string> {
  const text = (logger as unknown as WithChindings)[CHINDINGS] ?? '';
  const cached = boundKeys.get(logger);
  if (cached?.text === text) return cached.keys;
  const keys = new Set(Object.keys(parseChindings(text)));
  boundKeys.set(logger, { text, keys });
  return keys;
}

/** A new child's bindings, parent's and its own, merged into one object: the child's value of a key wins. */
function mergeChildBindings(child: Logger): void {
  const holder = child as unknown as WithChindings;
  const text = holder[CHINDINGS] ?? '';
  const merged = serializeChindings(parseChindings(text));
  if (merged.length !== text.length) holder[CHINDINGS] = merged;
}

/** Keys of a call's merge object that the logger already writes. */
function repeatedKeys(logger: Logger, object: Record<string, unknown>, lineKeys: ReadonlySet<string>): Set<string> | undefined {
  let repeated: Set<string> | undefined;
  const bound = keysBoundBy(logger);
  for (const key of Object.keys(object)) {
    if (bound.has(key) || lineKeys.has(key)) (repeated ??= new Set()).add(key);
  }
  return repeated;
}

export function createLogger(options: { level?: LevelWithSilent; name?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  return pino(
    {
      name: options.name ?? 'sensorpipe',
      level: options.level ?? 'info',
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      onChild: mergeChildBindings,
      hooks: {
        logMethod(args, method) {
          const [first] = args;
          if (typeof first !== 'object' || first === null || first instanceof Error) return method.apply(this, args);
          const object = first as Record<string, unknown>;
          const lineKeys = args.length > 1 ? LINE_KEYS_WITH_MESSAGE : LINE_KEYS;
          const repeated = repeatedKeys(this, object, lineKeys);
          if (repeated === undefined) return method.apply(this, args);
          // The object's value of a bound key wins: the bindings go without it for this one line.
          // pino writes synchronously, so the bindings are restored before anything else logs.
          // A key pino writes itself (level, time, a message) cannot be left out of the line: the object's goes.
          const holder = this as unknown as WithChindings;
          const hadOwn = Object.hasOwn(holder, CHINDINGS);
          const bindings = holder[CHINDINGS] ?? '';
          const kept: Record<string, unknown> = {};
          for (const [key, value] of Object.entries(object)) if (!lineKeys.has(key)) kept[key] = value;
          holder[CHINDINGS] = serializeChindings(parseChindings(bindings), repeated);
          try {
            return method.apply(this, [kept, ...args.slice(1)] as typeof args);
          } finally {
            if (hadOwn) holder[CHINDINGS] = bindings;
            else delete holder[CHINDINGS];
          }
        },
      },
    },
    options.destination ?? process.stderr,
  );
}

/**
 * The rules file, read and followed: parsed as YAML (which reads JSON too) and checked against
 * core/alert-rules.ts. Followed with fs.watch on its folder (an editor or a deploy replaces the file by
 * a rename, which a watch on the file itself loses track of) and, as a safety net for file systems
 * without change events (network mounts, some containers), a poll of its modification time. An invalid
 * new file is reported (ALERT_RULES_INVALID) and the rules in force stay in force. A missing file is
 * no rules (the component still serves its API and per-device rules from metadata).
 */
import { watch, unwatchFile, watchFile, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { AlertRulesFileSchema, type AlertRulesFile } from '../core/alert-rules.ts';
import { SensorpipeError } from '../core/errors.ts';

/** Reads and checks the rules file; throws ALERT_RULES_INVALID naming the problem. A missing file is empty. */
export async function loadRulesFile(path: string): Promise<AlertRulesFile> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { rules: [], webhooks: [] };
    throw new SensorpipeError('ALERT_RULES_INVALID', `${path}: cannot be read: ${(err as Error).message}`);
  }
  return parseRulesText(text, path);
}

/** Far more than 1,000 rules and 50 webhooks need; a bigger file is refused before it is parsed. */
export const MAX_RULES_FILE_BYTES = 1024 * 1024;

export function parseRulesText(text: string, where = 'rules file'): AlertRulesFile {
  if (Buffer.byteLength(text) > MAX_RULES_FILE_BYTES) throw new SensorpipeError('ALERT_RULES_INVALID', `${where}: larger than ${MAX_RULES_FILE_BYTES} bytes`);
  let data: unknown;
  try {
    // Aliases are capped: a "billion laughs" document must not expand without bound.
    data = parseYaml(text, { maxAliasCount: 100, uniqueKeys: true });
  } catch (err) {
    throw new SensorpipeError('ALERT_RULES_INVALID', `${where}: not valid YAML or JSON: ${(err as Error).message.split('\n')[0]}`);
  }
  // An empty file is no rules, as a missing one is.
  if (data === null || data === undefined) return { rules: [], webhooks: [] };
  const parsed = AlertRulesFileSchema.safeParse(data);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const at = issue?.path.length ? issue.path.join('.') : '(top level)';
    throw new SensorpipeError('ALERT_RULES_INVALID', `${where}: ${at}: ${issue?.message ?? 'invalid'}`, { path: at });
  }
  return parsed.data;
}

export interface RulesFileWatch {
  /** Reads the file now; resolves once `onRules` or `onError` ran. */
  reload(): Promise<void>;
  close(): void;
}

export function watchRulesFile(
  path: string,
  handlers: { onRules(file: AlertRulesFile): void; onError(err: SensorpipeError): void },
  options: { pollMs?: number; debounceMs?: number } = {},
): RulesFileWatch {
  let closed = false;
  let lastText: string | undefined;
  let running: Promise<void> = Promise.resolve();
  let debounce: NodeJS.Timeout | undefined;
  const reload = (): Promise<void> => {
    running = running.then(async () => {
      if (closed) return;
      const text = await readFile(path, 'utf8').catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? '' : `\u0000${err.message}`));
      // The watch and the poll both report one change, and editors write in several steps.
      if (text === lastText) return;
      lastText = text;
      try {
        handlers.onRules(text.startsWith('\u0000') ? await loadRulesFile(path) : parseRulesText(text, path));
      } catch (err) {
        handlers.onError(err instanceof SensorpipeError ? err : new SensorpipeError('ALERT_RULES_INVALID', (err as Error).message));
      }
    });
    return running;
  };
  const soon = () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => void reload(), options.debounceMs ?? 100);
  };
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(dirname(path), { persistent: false }, (_event, name) => {
      if (name === null || name === basename(path)) soon();
    });
    watcher.on('error', () => undefined); // the poll carries on
  } catch {
    watcher = undefined; // no folder yet, or no inotify: the poll alone
  }
  const poll = () => soon();
  watchFile(path, { interval: options.pollMs ?? 5000, persistent: false }, poll);
  return {
    reload,
    close() {
      closed = true;
      clearTimeout(debounce);
      watcher?.close();
      unwatchFile(path, poll);
    },
  };
}

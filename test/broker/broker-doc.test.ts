/**
 * docs/BROKER.md stays true to the code: every broker option with its variable, flag and default; every
 * CONNACK code; every login failure with its CONNACK code; every drop reason with what the client sees;
 * and no row for a name the code does not have.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { configSpecs } from '../../core/config.ts';
import { CONNACK, DROP_REASONS, LOGIN_FAILURES } from '../../broker/codes.ts';

const doc = readFileSync(new URL('../../docs/BROKER.md', import.meta.url), 'utf8');
/** The rows of the table whose header starts with `header` (cells joined by " | "). */
function table(header: string): string[][] {
  const lines = doc.split('\n');
  const start = lines.findIndex((line) => line.startsWith(`| ${header} |`));
  expect(start, `a table headed "${header}"`).toBeGreaterThanOrEqual(0);
  const body: string[][] = [];
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith('|')) break;
    body.push(line.split('|').slice(1, -1).map((cell) => cell.trim()));
  }
  return body;
}

describe('docs/BROKER.md', () => {
  it('has a row per broker option with its flag and default', () => {
    const options = table('variable');
    for (const spec of Object.values(configSpecs.broker)) {
      const row = options.find((r) => r[0] === `\`${spec.env}\``);
      expect(row, spec.env).toBeDefined();
      expect(row![1], spec.env).toBe(`\`--${spec.flag}\``);
      const fallback = 'default' in spec ? spec.default : undefined;
      if (fallback === undefined) expect(row![2], spec.env).toMatch(/^—/);
      else expect(row![2], spec.env).toBe(`\`${fallback}\``);
    }
    expect(options.length).toBe(Object.keys(configSpecs.broker).length);
  });

  it('lists every CONNACK code by its name, and which login failures give it', () => {
    const codes = table('code');
    expect(codes.map((r) => [Number(r[0]), r[1]])).toEqual(Object.entries(CONNACK).map(([name, code]) => [code, `\`${name}\``]));
    for (const [reason, { connack }] of Object.entries(LOGIN_FAILURES)) {
      expect(codes.find((r) => Number(r[0]) === connack)![2], reason).toContain(`\`${reason}\``);
    }
  });

  it('lists every login failure with its CONNACK code, and no other', () => {
    const failures = table('reason | CONNACK');
    expect(Object.fromEntries(failures.map((r) => [r[0], Number(r[1])]))).toEqual(
      Object.fromEntries(Object.entries(LOGIN_FAILURES).map(([reason, { connack }]) => [`\`${reason}\``, connack])),
    );
  });

  it('lists every drop reason with what the client sees, and no other', () => {
    const drops = table('reason | what the client sees');
    expect(Object.fromEntries(drops.map((r) => [r[0], r[1]]))).toEqual(
      Object.fromEntries(Object.entries(DROP_REASONS).map(([reason, { action }]) => [`\`${reason}\``, action])),
    );
  });
});

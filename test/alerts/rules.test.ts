/** The rules file's schema and the per-device metadata grammar: table-driven, bad inputs included. */
import { describe, expect, it } from 'vitest';
import { resolveRule, rulesFromMeta } from '../../core/alert-rules.ts';
import { isSensorpipeError } from '../../core/errors.ts';
import { parseRulesText } from '../../alerts/rules-file.ts';

describe('rules file', () => {
  it('reads YAML and JSON alike, with defaults', () => {
    const yaml = parseRulesText('rules:\n  - { id: hot, kind: above, metric: temperature, threshold: 30, hysteresis: 2, for: 10s }\n');
    const json = parseRulesText('{"rules":[{"id":"hot","kind":"above","metric":"temperature","threshold":30,"hysteresis":2,"for":"10s"}]}');
    expect(json).toEqual(yaml);
    const rule = resolveRule(yaml.rules[0]!);
    expect(rule).toMatchObject({ id: 'hot', kind: 'above', threshold: 30, clear: 28, forMs: 10_000, severity: 'warning', selector: { all: true } });
    expect(yaml.webhooks).toEqual([]);
  });

  it.each([
    ['below with a margin clears above the threshold', '{ id: cold, kind: below, metric: t, threshold: 5, hysteresis: 1 }', { clear: 6 }],
    ['silent: threshold in seconds', '{ id: q, kind: silent, after: 90s }', { threshold: 90, clear: 90, windowMs: 90_000 }],
    ['rate per second', '{ id: r, kind: rate, metric: t, threshold: 2, per: s, window: 30s }', { perMs: 1000, windowMs: 30_000 }],
    ['completeness default window', '{ id: c, kind: completeness, threshold: 95 }', { windowMs: 600_000, clear: 95 }],
    ['rejections by reason', '{ id: x, kind: rejections, threshold: 0, reasons: [READING_BAD_SIGNATURE], window: 1m }', { reasons: ['READING_BAD_SIGNATURE'], windowMs: 60_000 }],
  ])('%s', (_name, rule, expected) => {
    expect(resolveRule(parseRulesText(`rules:\n  - ${rule}\n`).rules[0]!)).toMatchObject(expected);
  });

  it.each([
    ['not YAML', 'rules: [unclosed', 'not valid YAML'],
    ['an unknown top-level key', 'rulez: []', 'rulez'],
    ['an unknown rule key', 'rules: [{ id: a, kind: silent, after: 1m, colour: red }]', 'colour'],
    ['an unknown kind', 'rules: [{ id: a, kind: hotter, metric: t, threshold: 1 }]', 'rules.0.kind'],
    ['a rule id not a slug', 'rules: [{ id: "Hot Room", kind: silent, after: 1m }]', 'rules.0.id'],
    ['a duplicate id', 'rules: [{ id: a, kind: silent, after: 1m }, { id: a, kind: silent, after: 2m }]', 'used twice'],
    ['a meta- id', 'rules: [{ id: meta-x, kind: silent, after: 1m }]', 'meta-'],
    ['a duration without a unit', 'rules: [{ id: a, kind: silent, after: "60" }]', 'after'],
    ['a zero duration', 'rules: [{ id: a, kind: silent, after: 0s }]', 'after'],
    ['a threshold that is text', 'rules: [{ id: a, kind: above, metric: t, threshold: "30" }]', 'threshold'],
    ['a clear value on the wrong side (above)', 'rules: [{ id: a, kind: above, metric: t, threshold: 30, clear: 31 }]', 'clear'],
    ['a clear value on the wrong side (below)', 'rules: [{ id: a, kind: below, metric: t, threshold: 5, clear: 4 }]', 'clear'],
    ['clear and hysteresis both', 'rules: [{ id: a, kind: above, metric: t, threshold: 30, clear: 29, hysteresis: 1 }]', 'not both'],
    ['a metric name not a metric', 'rules: [{ id: a, kind: above, metric: Temp, threshold: 1 }]', 'metric'],
    ['completeness over 100', 'rules: [{ id: a, kind: completeness, threshold: 101 }]', 'threshold'],
    ['an unknown rejection reason', 'rules: [{ id: a, kind: rejections, threshold: 0, reasons: [EVIL] }]', 'reasons'],
    ['a selector with two keys', 'rules: [{ id: a, kind: silent, after: 1m, selector: { site: x, profile: y } }]', 'selector'],
    ['a webhook that is not http', 'webhooks: [{ url: "file:///etc/passwd" }]', 'url'],
    ['a short webhook secret', 'webhooks: [{ url: "http://127.0.0.1/h", secret: short }]', 'secret'],
    ['a webhook listed twice', 'webhooks: [{ url: "http://127.0.0.1/h" }, { url: "http://127.0.0.1/h" }]', 'twice'],
    ['a YAML alias bomb', `a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]`, 'YAML'],
    ['a key given twice', 'rules: []\nrules: []', 'YAML'],
    ['a file over 1 MiB', `# ${'x'.repeat(1024 * 1024)}\nrules: []`, 'larger than'],
  ])('refuses %s with ALERT_RULES_INVALID', (_name, text, mentions) => {
    let caught: unknown;
    try {
      parseRulesText(text);
    } catch (err) {
      caught = err;
    }
    expect(isSensorpipeError(caught, 'ALERT_RULES_INVALID')).toBe(true);
    expect((caught as Error).message).toContain(mentions);
  });

  it('an empty file is no rules', () => {
    expect(parseRulesText('')).toEqual({ rules: [], webhooks: [] });
  });
});

describe('rules from device metadata', () => {
  it.each([
    ['temperature > 35', [{ id: 'meta-temperature-above', kind: 'above', metric: 'temperature', threshold: 35, clear: 35, forMs: 0 }]],
    ['temperature > 35 clear 33 for 30s', [{ id: 'meta-temperature-above', threshold: 35, clear: 33, forMs: 30_000 }]],
    ['humidity < 20 clear 25', [{ id: 'meta-humidity-below', kind: 'below', threshold: 20, clear: 25 }]],
    ['silent 2m', [{ id: 'meta-silent', kind: 'silent', threshold: 120 }]],
    ['completeness < 90% window 5m', [{ id: 'meta-completeness', threshold: 90, windowMs: 300_000 }]],
    ['rejections > 3', [{ id: 'meta-rejections', threshold: 3, windowMs: 300_000 }]],
    [' co2 >  800 ;  silent 1m ', [{ id: 'meta-co2-above' }, { id: 'meta-silent' }]],
  ])('%j', (text, expected) => {
    const result = rulesFromMeta('dev-1', { alerts: text });
    expect(result.problems).toEqual([]);
    expect(result.rules).toMatchObject(expected);
    for (const rule of result.rules) expect(rule.selector).toEqual({ device: 'dev-1' });
  });

  it.each([
    ['temperature >> 35'],
    ['temperature > hot'],
    ['temperature > 35 clear 36'],
    ['silent 60'],
    ['silent 0s'],
    ['Temperature > 3'],
    ['rejections > -1'],
    ['completeness < 120'],
    ['drop table devices'],
    ['silent 1m; silent 2m'],
  ])('refuses %j and keeps the good clauses', (bad) => {
    const result = rulesFromMeta('dev-1', { alerts: `${bad}; co2 > 900` });
    expect(result.problems.length).toBeGreaterThanOrEqual(1);
    expect(result.rules.map((r) => r.id)).toContain('meta-co2-above');
  });

  it('no alerts metadata, no rules', () => {
    expect(rulesFromMeta('dev-1', { site: 'lab' })).toEqual({ rules: [], problems: [] });
  });
});

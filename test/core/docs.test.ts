/** Generated documentation stays in step with the code it describes. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { describeErrorCodes, ERROR_CODES, REJECT_REASONS } from '../../core/errors.ts';
import { staleJsonSchemas } from '../../core/json-schema.ts';
import { LIMITS } from '../../core/limits.ts';
import { RESERVED_NAMES } from '../../core/schemas.ts';

const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8');

describe('generated docs', () => {
  it('core/schema/*.json are current (npm run docs:gen)', async () => {
    expect(await staleJsonSchemas()).toEqual([]);
  });

  it('docs/ERRORS.md lists every error code (npm run docs:gen)', () => {
    const doc = read('docs/ERRORS.md');
    const block = doc.slice(doc.indexOf('<!-- codes:begin -->') + '<!-- codes:begin -->'.length, doc.indexOf('<!-- codes:end -->')).trim();
    expect(block).toBe(describeErrorCodes());
  });

  it('PROTOCOL.md names every reject reason and quotes the limits', () => {
    const doc = read('core/PROTOCOL.md');
    for (const reason of REJECT_REASONS) expect(doc).toContain(`\`${reason}\``);
    for (const code of REJECT_REASONS) expect(ERROR_CODES[code].disposition).toBe('reject');
    for (const n of [LIMITS.maxPayloadBytes, LIMITS.deviceIdMaxLength, LIMITS.metricNameMaxLength, LIMITS.maxMetricsPerReading, LIMITS.maxReadingsPerMessage, LIMITS.maxSeq, LIMITS.minTimestampMs, LIMITS.maxTimestampMs]) {
      expect(doc).toContain(`**${n}**`.replace(/\*\*(\d{10,})\*\*/, '$1'));
    }
    expect(doc).toContain(LIMITS.deviceIdPattern.source);
    expect(doc).toContain(LIMITS.metricNamePattern.source);
  });

  it('PROTOCOL.md names every reserved name that the id and metric patterns let through', () => {
    const doc = read('core/PROTOCOL.md');
    const slugs = [...RESERVED_NAMES].filter((name) => LIMITS.deviceIdPattern.test(name) || LIMITS.metricNamePattern.test(name));
    expect(slugs).toEqual(['constructor', 'prototype']);
    for (const name of slugs) expect(doc).toContain(`\`${name}\``);
  });
});

/** The one duration grammar (core/duration.ts): what it reads, and every way of getting it wrong. */
import { describe, expect, it } from 'vitest';
import { parseDurationMs } from '../../core/duration.ts';

const MAX = Number.MAX_SAFE_INTEGER;

describe('parseDurationMs', () => {
  it.each([
    ['0', 0],
    ['250', 250],
    ['0ms', 0],
    ['500ms', 500],
    ['1s', 1000],
    ['1.5s', 1500],
    ['0.7s', 700], // exact: not 699.9999999999999
    ['1.50s', 1500],
    ['0.001s', 1],
    ['1.5m', 90_000],
    ['5m', 300_000],
    ['2h', 7_200_000],
    ['7d', 604_800_000],
    ['1w', 604_800_000],
    ['007s', 7000],
    ['1.0', 1],
    [String(MAX), MAX],
    [`${MAX}ms`, MAX],
    ['104249991d', 104_249_991 * 86_400_000], // the most days that fit a safe integer
  ])('reads %j as %i ms', (text, ms) => {
    expect(parseDurationMs(text)).toBe(ms);
  });

  it.each([
    ['empty', ''],
    ['a space', ' '],
    ['a leading space', ' 5s'],
    ['a trailing space', '5s '],
    ['a tab', '\t5s'],
    ['a newline after', '5s\n'],
    ['a space before the unit', '5 s'],
    ['a sign', '-1s'],
    ['a plus sign', '+1s'],
    ['a negative number', '-5'],
    ['two decimal points', '1.5.5s'],
    ['an exponent', '1e3s'],
    ['an exponent past any double', '1e999s'],
    ['a leading point', '.5s'],
    ['a trailing point', '5.s'],
    ['a unit alone', 's'],
    ['ms alone', 'ms'],
    ['an unknown unit', '1y'],
    ['a word', '1 minute'],
    ['a long unit name', '1min'],
    ['an upper-case unit', '1S'],
    ['two units', '5m5s'],
    ['a fraction of a millisecond', '1.5'],
    ['a fraction of a millisecond with a unit', '2.5ms'],
    ['a sub-millisecond fraction of a second', '0.0001s'],
    ['hex', '0x10'],
    ['Infinity', 'Infinity'],
    ['NaN', 'NaN'],
    ['2^53 ms', String(MAX + 1)],
    ['2^53 with the unit', `${MAX + 1}ms`],
    ['one day more than fits', '104249992d'],
    ['weeks past 2^53 ms', '999999999w'],
    ['400 digits', '1'.repeat(400)],
    ['Arabic-Indic digits', '\u0661\u0665s'],
    ['full-width digits', '\uff11\uff15s'],
    ['Devanagari digits', '\u0967s'],
    ['a superscript digit', '\u00b9s'],
  ])('refuses %s (%j)', (_what, text) => {
    expect(parseDurationMs(text)).toBeNaN();
  });

  it('reads a bare number as ms, unless a unit is required', () => {
    expect(parseDurationMs('5')).toBe(5);
    expect(parseDurationMs('5', { unitRequired: true })).toBeNaN();
    expect(parseDurationMs('5s', { unitRequired: true })).toBe(5000);
  });
});

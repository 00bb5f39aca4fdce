/** Pure logic of the admin API, table-driven: the CSV reader of bulk files, and the failed-authentication tracker. */
import { describe, expect, it } from 'vitest';
import { credentialsCsv, devicesFromCsv, parseCsv } from '../../admin/csv.ts';
import { AuthFailures } from '../../admin/http.ts';
import { isSensorpipeError } from '../../core/errors.ts';

describe('parseCsv', () => {
  it.each([
    ['plain, LF', 'a,b\n1,2\n', [['a', 'b'], ['1', '2']]],
    ['CRLF, no final line end', 'a,b\r\n1,2', [['a', 'b'], ['1', '2']]],
    ['blank lines skipped', 'a\n\n1\n\n', [['a'], ['1']]],
    ['a byte-order mark', '\ufeffid\nx\n', [['id'], ['x']]],
    ['quoted comma, quote and line break', 'a,b\n"x, ""y""","line\nbreak"\n', [['a', 'b'], ['x, "y"', 'line\nbreak']]],
    ['empty fields', 'a,b,c\n,,\n', [['a', 'b', 'c'], ['', '', '']]],
    ['a quoted empty field alone is a row', 'a\n""\n', [['a'], ['']]],
    ['a lone CR ends a row', 'a\r1', [['a'], ['1']]],
  ])('%s', (_what, text, rows) => {
    expect(parseCsv(text)).toEqual(rows);
  });

  it.each([
    ['an unclosed quote', 'a\n"x\n'],
    ['text after a closing quote', 'a\n"x"y\n'],
  ])('refuses %s with DEVICE_INVALID', (_what, text) => {
    let caught: unknown;
    try {
      parseCsv(text);
    } catch (err) {
      caught = err;
    }
    expect(isSensorpipeError(caught, 'DEVICE_INVALID')).toBe(true);
  });
});

describe('devicesFromCsv', () => {
  it('reads columns by name, in any order and case; an empty cell is unset; payload is a name or JSON', () => {
    const input = devicesFromCsv('Site,ID,payload,trust\n"North, 2",dev-1,,\n,dev-2,tasmota,broker-authenticated\n,dev-3,"{""format"":""flat-json""}",broker-authenticated\n');
    expect(input.devices).toEqual([
      { site: 'North, 2', id: 'dev-1' },
      { id: 'dev-2', payload: { format: 'tasmota' }, trust: 'broker-authenticated' },
      { id: 'dev-3', payload: { format: 'flat-json' }, trust: 'broker-authenticated' },
    ]);
    expect(input.rowLabel?.(0)).toBe('CSV row 2');
  });

  it.each([
    ['no header', ''],
    ['an unknown column', 'id,owner\nx,y\n'],
    ['a column twice', 'id,site,site\nx,a,b\n'],
    ['no id column', 'site\nx\n'],
    ['__proto__ as a column', '__proto__,id\nx,y\n'],
    ['a row with too few fields', 'id,site\nx\n'],
    ['a payload that is bad JSON', 'id,payload\nx,"{""format"":"\n'],
    ['a payload with a key given twice', 'id,payload\nx,"{""format"":""a"",""format"":""b""}"\n'],
  ])('refuses %s with DEVICE_INVALID', (_what, text) => {
    let caught: unknown;
    try {
      devicesFromCsv(text);
    } catch (err) {
      caught = err;
    }
    expect(isSensorpipeError(caught, 'DEVICE_INVALID'), String(caught)).toBe(true);
    expect(Object.prototype).not.toHaveProperty('id');
  });

  it('writes credentials as CSV that reads back, quoting what needs it', () => {
    const text = credentialsCsv([
      { deviceId: 'a', mqttPassword: 'p-1', signing: { alg: 'hmac-sha256', key: 'k+/=' } },
      { deviceId: 'b', mqttPassword: 'p-2', signing: { alg: 'ed25519', privateKey: 's', publicKey: 'P' } },
      { deviceId: 'c', mqttPassword: 'p-3', trust: 'broker-authenticated' },
    ]);
    expect(parseCsv(text)).toEqual([
      ['device_id', 'mqtt_username', 'mqtt_password', 'alg', 'signing_key', 'public_key'],
      ['a', 'a', 'p-1', 'hmac-sha256', 'k+/=', ''],
      ['b', 'b', 'p-2', 'ed25519', 's', 'P'],
      ['c', 'c', 'p-3', 'none', '', ''],
    ]);
  });
});

describe('AuthFailures', () => {
  it('bans an address at the limit within the window, for the ban time; the window starts again after it', () => {
    const failures = new AuthFailures({ max: 3, windowMs: 1_000, banMs: 10_000 });
    expect(failures.fail('a', 0)).toEqual({ count: 1, banned: false });
    expect(failures.fail('a', 500)).toEqual({ count: 2, banned: false });
    expect(failures.fail('b', 600)).toEqual({ count: 1, banned: false });
    // Past the window: counting starts again.
    expect(failures.fail('a', 1_200)).toEqual({ count: 1, banned: false });
    failures.fail('a', 1_300);
    expect(failures.fail('a', 1_400)).toEqual({ count: 3, banned: true });
    expect(failures.banRemaining('a', 1_400)).toBe(10_000);
    expect(failures.banRemaining('b', 1_400)).toBe(0);
    expect(failures.banRemaining('a', 11_400)).toBe(0);
  });

  it('keeps its memory bounded under failures from many addresses, and keeps the bans', () => {
    const failures = new AuthFailures({ max: 2, windowMs: 60_000, banMs: 60_000 });
    failures.fail('banned', 0);
    failures.fail('banned', 0);
    for (let i = 0; i < 30_000; i++) failures.fail(`10.0.${i >> 8}.${i & 255}`, 1);
    const internal = failures as unknown as { failures: Map<string, unknown>; bannedUntil: Map<string, unknown> };
    expect(internal.failures.size + internal.bannedUntil.size).toBeLessThanOrEqual(10_000);
    expect(failures.banRemaining('banned', 2)).toBeGreaterThan(0);
  });
});

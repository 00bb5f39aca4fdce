/**
 * The soak's webhook receivers (soak/webhook-receiver.ts) over real HTTP on loopback: a signed alert
 * event is recorded once answered 200; a bad signature or a body that is not an alert event is refused
 * and counted, never recorded; the flapping one answers 500, drops connections and answers slowly, and
 * records only what it answered 200; down, it refuses connections, and comes back on the same URL.
 */
import { createHmac } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { startWebhookReceiver, type WebhookReceiver } from '../../soak/webhook-receiver.ts';

const SECRET = 'a-secret-of-sixteen-or-more';
const opened: WebhookReceiver[] = [];
afterEach(async () => {
  for (const r of opened.splice(0)) await r.close();
});

async function receiver(flapping: boolean): Promise<WebhookReceiver> {
  const r = await startWebhookReceiver({ name: flapping ? 'flapping' : 'healthy', secret: SECRET, flapping, seed: 7 });
  opened.push(r);
  return r;
}

const body = (id: string) => JSON.stringify({ v: 1, id, device: 'd1', rule: 'r', kind: 'silent', severity: 'critical', state: 'firing', value: 2, threshold: 1, at: Date.now(), message: 'm' });
const sign = (text: string, secret = SECRET) => `sha256=${createHmac('sha256', secret).update(text).digest('hex')}`;

/** The status, or the error code when no answer came. */
async function post(url: string, text: string, signature: string | null = sign(text)): Promise<number | string> {
  try {
    const headers: Record<string, string> = { 'content-type': 'application/json', ...(signature === null ? {} : { 'x-sensorpipe-signature': signature }) };
    const response = await fetch(url, { method: 'POST', body: text, headers, signal: AbortSignal.timeout(10_000) });
    await response.arrayBuffer();
    return response.status;
  } catch (err) {
    return (err as Error & { cause?: { code?: string } }).cause?.code ?? (err as Error).name;
  }
}

describe('webhook receivers', () => {
  it('records a signed alert event, and refuses and counts bad ones', async () => {
    const r = await receiver(false);
    expect(await post(r.url, body('e1'))).toBe(200);
    expect(await post(r.url, body('e2'), sign(body('e2'), 'another-secret-of-16-chars'))).toBe(400);
    expect(await post(r.url, 'not json')).toBe(400);
    expect(await post(r.url, JSON.stringify({ id: 'e3' }))).toBe(400);
    expect(await post(r.url, body('e4'), 'sha256=zz')).toBe(400);
    expect(await post(r.url, body('e5'), null)).toBe(400);
    expect(r.deliveries.map((d) => d.id)).toEqual(['e1']);
    expect(r.counts).toMatchObject({ invalid: 5, answered200: 1 });
  });

  it('flapping: answers 500, drops connections, answers slowly, and records only what it answered 200', async () => {
    const r = await receiver(true);
    const ids = Array.from({ length: 40 }, (_, i) => `e${i}`);
    const results = await Promise.all(ids.map((id) => post(r.url, body(id))));
    const ok = ids.filter((_, i) => results[i] === 200);
    expect(results).toContain(500);
    expect(results.some((x) => typeof x === 'string')).toBe(true); // the connection dropped: no answer
    expect(r.counts.slow).toBeGreaterThan(0);
    expect(r.deliveries.map((d) => d.id).sort()).toEqual(ok.sort());
    r.calm();
    expect(await Promise.all(ids.slice(0, 10).map((id) => post(r.url, body(id))))).toEqual(Array(10).fill(200));
  });

  it('down: refuses connections, then answers on the same URL, and says when it was down', async () => {
    const r = await receiver(true);
    r.calm();
    const down = r.down(500);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(await post(r.url, body('e1'))).toBe('ECONNREFUSED');
    await down;
    expect(await post(r.url, body('e2'))).toBe(200);
    expect(r.deliveries.map((d) => d.id)).toEqual(['e2']);
    expect(r.outages).toHaveLength(1);
    expect(r.outages[0]!.to - r.outages[0]!.from).toBeGreaterThanOrEqual(500);
  });
});

/**
 * The publish gate: every PUBLISH from a client passes here before aedes acknowledges it. It checks the
 * topic ACL and limits (broker/acl.ts, verdicts remembered per connection) and each device's token
 * bucket, and counts what it lets through or drops (broker/codes.ts).
 *
 * This is the broker's hot path (bench/broker.ts measures its CPU per message): one WeakMap lookup per
 * PUBLISH, one remembered ACL verdict, the device's bucket kept on its connection, no allocation for a
 * PUBLISH that is let through.
 */
import type { AedesOptions, Client, PublishPacket } from 'aedes';
import { parseTopic } from '../core/topics.ts';
import { publishChecker, receiveChecker, type Principal, type PublishRefusal, type TopicLimits } from './acl.ts';
import type { DropReason } from './codes.ts';
import type { Connections } from './connections.ts';
import type { BrokerMetrics } from './metrics.ts';

/**
 * Publishes from a device over its rate are re-routed here instead of being delivered: MQTT 3.1.1 has
 * no negative acknowledgement, so the PUBLISH is acknowledged and goes nowhere [MQTT-3.3.5-2]. No client
 * may subscribe to it (it starts with "$", so "#" does not match it either [MQTT-4.7.2-1]).
 * Broker-internal, not a product topic, which is why it is not in core/topics.ts.
 */
export const DROPPED_TOPIC = '$sensorpipe/dropped';

/** A token bucket per device: `rate` tokens a second, at most `burst` saved up. */
export class TokenBucket {
  private tokens: number;
  private last: number;
  /** Publishes dropped since the last one that was let through. */
  consecutiveDrops = 0;

  constructor(
    private readonly rate: number,
    private readonly burst: number,
    private readonly now: () => number = Date.now,
  ) {
    this.tokens = burst;
    this.last = now();
  }

  /**
   * `now` may be passed by a caller that has just read the clock anyway. A `now` before the last one
   * refills nothing and takes nothing away: the caller's clock was read just before this bucket was made
   * (the first publish of a device was dropped whenever the millisecond turned in between), or the
   * system clock stepped back.
   */
  take(now: number = this.now()): boolean {
    if (now > this.last) {
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate);
      this.last = now;
    }
    if (this.tokens >= 1) {
      this.tokens -= 1;
      this.consecutiveDrops = 0;
      return true;
    }
    this.consecutiveDrops++;
    return false;
  }
}

export interface PublishLimits extends TopicLimits {
  /** Messages per second a device may publish on average. */
  publishRate: number;
  /** Messages a device may publish at once above its rate. */
  publishBurst: number;
  /** Drops in a row after which the device is disconnected. */
  publishAbuseDrops: number;
}

/** What becomes of one PUBLISH: delivered, or dropped for a reason (what that means: broker/codes.ts). */
export type PublishVerdict = 'deliver' | PublishRefusal | Extract<DropReason, 'rate_limited' | 'rate_limited_disconnect' | 'abuse_disconnect'>;

/** What the PUBLISH path needs of a connection, found with one lookup. */
interface Publisher {
  principal: Principal;
  refusal: (topic: string) => PublishRefusal | undefined;
  bucket: TokenBucket | undefined;
  /** What it may receive; made the first time a delivery is checked (only while it connects). */
  mayReceive: ((topic: string) => boolean) | undefined;
}

export interface PublishGateOptions {
  limits: PublishLimits;
  metrics: BrokerMetrics;
  /** Told of every PUBLISH from a device (its "last seen"). */
  presence: { seen(deviceId: string, now: number): void };
  connections: Connections;
  now?: () => number;
}

type Hook<K extends keyof AedesOptions> = NonNullable<AedesOptions[K]>;

/** Topics whose messages ingest reads readings from: signed telemetry, and the payload mappings' topics. */
function isReadingTopic(topic: string): boolean {
  const kind = parseTopic(topic)?.kind;
  return kind === 'telemetry' || kind === 'tasmota' || kind === 'shelly';
}

export class PublishGate {
  readonly #publishers = new WeakMap<Client, Publisher>();
  /** One bucket per device, kept across its connections (reconnecting does not refill it). */
  readonly #buckets = new Map<string, TokenBucket>();
  readonly #limits: PublishLimits;
  readonly #metrics: BrokerMetrics;
  readonly #presence: PublishGateOptions['presence'];
  readonly #connections: Connections;
  readonly #now: () => number;

  constructor(options: PublishGateOptions) {
    this.#limits = options.limits;
    this.#metrics = options.metrics;
    this.#presence = options.presence;
    this.#connections = options.connections;
    this.#now = options.now ?? Date.now;
  }

  /** A client logged in as `principal`; its PUBLISHes are let through from now on, as far as its ACL goes. */
  admit(client: Client, principal: Principal): void {
    this.#publishers.set(client, { principal, refusal: publishChecker(principal, this.#limits), bucket: undefined, mayReceive: undefined });
  }

  /** Decides one PUBLISH, taking a token from the device's bucket when it is let through. */
  verdict(client: Client, packet: PublishPacket): PublishVerdict {
    const publisher = this.#publishers.get(client);
    if (publisher === undefined) return 'acl_publish';
    const refusal = publisher.refusal(packet.topic);
    if (refusal !== undefined) return refusal;
    const { principal } = publisher;
    if (principal.kind !== 'device') return 'deliver';
    const now = this.#now();
    this.#presence.seen(principal.deviceId, now);
    // The Will is the broker's publish on the device's behalf, not part of its rate.
    if (packet === (client as unknown as { will?: unknown }).will) return 'deliver';
    let bucket = publisher.bucket ?? this.#buckets.get(principal.deviceId);
    if (bucket === undefined) this.#buckets.set(principal.deviceId, (bucket = new TokenBucket(this.#limits.publishRate, this.#limits.publishBurst, this.#now)));
    publisher.bucket = bucket;
    if (bucket.take(now)) return 'deliver';
    // A reading the broker acknowledges must reach ingest. Over the rate, telemetry at QoS 1/2 is refused
    // by closing the connection instead [MQTT-3.3.5-2]: unacknowledged, it stays with the device, which
    // sends it again once reconnected (at the rate, if it keeps on).
    if (packet.qos > 0 && isReadingTopic(packet.topic)) return 'rate_limited_disconnect';
    return bucket.consecutiveDrops >= this.#limits.publishAbuseDrops ? 'abuse_disconnect' : 'rate_limited';
  }

  readonly authorizePublish: Hook<'authorizePublish'> = (client, packet, done) => {
    if (client === null) {
      // A Will left by a client of a broker that died (scale-out): only status topics were allowed in.
      done(parseTopic(packet.topic)?.kind === 'status' ? null : new Error('will refused'));
      return;
    }
    const verdict = this.verdict(client, packet);
    if (verdict === 'deliver') {
      this.#metrics.publishesIn++;
      done(null);
      return;
    }
    const metrics = this.#metrics;
    switch (verdict) {
      case 'rate_limited':
        metrics.dropped('rate_limited');
        packet.topic = DROPPED_TOPIC;
        packet.retain = false;
        done(null);
        return;
      case 'abuse_disconnect':
        metrics.dropped('rate_limited');
        metrics.dropped('abuse_disconnect');
        this.#log(client).warn('device disconnected: publishing far above its rate');
        done(new Error('publish rate abuse'));
        return;
      case 'rate_limited_disconnect':
        metrics.dropped('rate_limited_disconnect');
        this.#log(client).debug('telemetry over the publish rate: connection closed, not acknowledged');
        done(new Error('publish rate exceeded'));
        return;
      case 'acl_publish':
      case 'topic_limits':
        metrics.dropped(verdict);
        // MQTT 3.1.1 cannot refuse a PUBLISH: the connection is closed [MQTT-3.3.5-2].
        done(new Error('publish not authorised'));
        return;
    }
  };

  /**
   * Every delivery to a client. Once it is connected, a client is delivered to only through the
   * subscriptions it was granted, so this costs one property read: the publish path costs what it did.
   * While it is still connecting (a persistent session being restored), two more rules:
   *   - nothing before its CONNACK [MQTT-3.2.0-1]. aedes restores the session's subscriptions before it
   *     answers the CONNECT, and a message published in between went out ahead of the CONNACK (with
   *     Redis, every time messages were flowing; an MQTT.js client then stalls until its connect timeout).
   *     Such a message at QoS 1/2 is in the session's queue already (aedes queues for every persistent
   *     subscriber before delivering, and refusing it here does not clear it), and goes out right after the
   *     CONNACK with the rest of the queue, in order; at QoS 0 it is dropped, as for a client not yet there;
   *   - what was queued for the session while it was away (lib/handlers/connect.js, emptyQueue) is checked
   *     against what this client may receive: it was queued for filters stored earlier, perhaps by another
   *     principal with the same client id, before its ACL changed, or by an older broker that stored
   *     refused filters (broker/session-guard.ts). A refused one is dropped, and aedes clears it from the queue.
   */
  readonly authorizeForward: Hook<'authorizeForward'> = (client, packet) => {
    if (!client.connected && !this.#mayDeliverWhileConnecting(client, packet.topic)) return null;
    this.#metrics.publishesOut++;
    return packet;
  };

  #mayDeliverWhileConnecting(client: Client, topic: string): boolean {
    if (!(client as unknown as { connackSent: boolean }).connackSent) return false;
    const publisher = this.#publishers.get(client);
    if (publisher === undefined) return false;
    publisher.mayReceive ??= receiveChecker(publisher.principal);
    return publisher.mayReceive(topic);
  }

  #log(client: Client) {
    return this.#connections.clientLog(client, this.#publishers.get(client)?.principal);
  }
}

/**
 * Logging in, and what a logged-in client may subscribe to.
 *
 *   - `checkLogin` decides who a CONNECT logs in as (a device from the registry, or a svc:* account
 *     from config), binds a device's client id to its id, and checks the Will; a refusal is a
 *     `RefusedLogin` whose CONNACK code comes from broker/codes.ts.
 *   - `clampKeepalive` is the broker's keepalive range [MQTT-3.1.2-24].
 *   - `Logins` plugs them into aedes (preConnect, authenticate, authorizeSubscribe), remembers each
 *     client's principal, counts refusals and reports them to the login ban (broker/admission.ts), and
 *     holds each connection to MAX_SUBSCRIPTIONS_PER_CLIENT filters.
 */
import type { AedesOptions, AuthenticateError, Client, PublishPacket } from 'aedes';
import { verifyMqttPassword, type Registry } from '../core/registry.ts';
import { sameSecret } from '../core/secret.ts';
import { deviceTreeOf, mayHoldFilter, mayLeaveWill, SERVICE_PREFIX, topicWithinLimits, type Principal, type ServiceName, type TopicLimits } from './acl.ts';
import type { Admission } from './admission.ts';
import { LOGIN_FAILURES, type LoginFailure, type LoginRefusalCode } from './codes.ts';
import type { Connections } from './connections.ts';
import type { BrokerMetrics } from './metrics.ts';

export class RefusedLogin extends Error {
  readonly returnCode: LoginRefusalCode;

  constructor(readonly reason: LoginFailure) {
    super(reason);
    this.returnCode = LOGIN_FAILURES[reason].connack;
  }
}

/** What a CONNECT presents. */
export interface LoginAttempt {
  clientId: string;
  /** The CONNECT's client id was zero bytes (aedes then made one up). */
  clientIdWasEmpty: boolean;
  cleanSession: boolean;
  username: string | undefined;
  password: Buffer | undefined;
  /** Topic of the CONNECT's Will, if it has one. */
  willTopic: string | undefined;
}

export type ServicePasswords = Readonly<Record<ServiceName, string | undefined>>;

export interface LoginPolicy {
  registry: Registry;
  servicePasswords: ServicePasswords;
  topicLimits: TopicLimits;
}

/** Who `attempt` logs in as; throws a RefusedLogin saying why not. */
export function checkLogin(attempt: LoginAttempt, policy: LoginPolicy): Principal {
  const { username, password } = attempt;
  if (username === undefined || password === undefined) throw new RefusedLogin('anonymous');
  let principal: Principal;
  if (username.startsWith(SERVICE_PREFIX)) {
    const service = username.slice(SERVICE_PREFIX.length) as ServiceName;
    const expected = Object.hasOwn(policy.servicePasswords, service) ? policy.servicePasswords[service] : undefined;
    if (expected === undefined) throw new RefusedLogin('service_disabled');
    if (!sameSecret(password, expected)) throw new RefusedLogin('bad_credentials');
    // A service must not take over a device's session by using its id as client id.
    if (policy.registry.get(attempt.clientId) !== undefined) throw new RefusedLogin('client_id_mismatch');
    // [MQTT-3.1.3-8]: a zero-byte client id with CleanSession 0 gets return code 2.
    if (attempt.clientIdWasEmpty && !attempt.cleanSession) throw new RefusedLogin('client_id_mismatch');
    principal = { kind: 'service', service };
  } else {
    const record = policy.registry.get(username);
    if (record === undefined) throw new RefusedLogin('unknown_device');
    const passwordOk = verifyMqttPassword(record, password);
    if (record.status === 'revoked') throw new RefusedLogin('revoked_device');
    if (!passwordOk) throw new RefusedLogin('bad_credentials');
    // The client id must be the device id: nobody can take over another device's session.
    if (attempt.clientId !== username) throw new RefusedLogin('client_id_mismatch');
    principal = { kind: 'device', deviceId: record.id, verifier: record.mqtt.hash };
    // An off-the-shelf device also owns its mapping's topic tree (broker/acl.ts).
    const tree = deviceTreeOf(record.payload?.format);
    if (tree !== undefined) principal.tree = tree;
  }
  // aedes does not authorise Wills: a Will is a publish the broker makes later on the client's behalf.
  const will = attempt.willTopic;
  if (will !== undefined && (!topicWithinLimits(will, policy.topicLimits) || !mayLeaveWill(principal, will))) throw new RefusedLogin('will_not_allowed');
  return principal;
}

export interface KeepaliveLimits {
  keepaliveMinS: number;
  keepaliveMaxS: number;
}

/**
 * The keepalive the broker holds a client to: 0 ("no keepalive") or a very long one would let a dead
 * connection keep its slot forever, so the broker applies its own ceiling (and floor); aedes drops a
 * silent client after 1.5 times the value [MQTT-3.1.2-24].
 */
export function clampKeepalive(keepalive: number, limits: KeepaliveLimits): number {
  if (keepalive === 0 || keepalive > limits.keepaliveMaxS) return limits.keepaliveMaxS;
  if (keepalive < limits.keepaliveMinS) return limits.keepaliveMinS;
  return keepalive;
}

export interface LoginOptions {
  limits: TopicLimits & KeepaliveLimits & { loginBanMs: number };
  servicePasswords: ServicePasswords;
  registry: Registry;
  admission: Admission;
  metrics: BrokerMetrics;
  connections: Connections;
  /** Called for each client that logged in, before aedes answers its CONNECT. */
  onLogin(client: Client, principal: Principal): void;
}

type Hook<K extends keyof AedesOptions> = NonNullable<AedesOptions[K]>;

/**
 * Most filters one connection may hold. aedes has no limit: one device could grow the broker's
 * subscription tries (and, with CleanSession 0, its stored session) without bound, a 512 KiB SUBSCRIBE
 * at a time. The services need one or two filters, a device a few, a tool such as MQTT Explorer a handful.
 */
export const MAX_SUBSCRIPTIONS_PER_CLIENT = 100;

export class Logins {
  readonly #options: LoginOptions;
  readonly #policy: LoginPolicy;
  readonly #principals = new WeakMap<Client, Principal>();
  readonly #emptyClientId = new WeakSet<Client>();
  /** The filters each connection was granted and holds (for MAX_SUBSCRIPTIONS_PER_CLIENT). */
  readonly #held = new WeakMap<Client, Set<string>>();

  constructor(options: LoginOptions) {
    this.#options = options;
    this.#policy = { registry: options.registry, servicePasswords: options.servicePasswords, topicLimits: options.limits };
  }

  get registry(): Registry {
    return this.#policy.registry;
  }

  /** Logins from now on are checked against `next` (connected clients are the business of broker/presence.ts). */
  useRegistry(next: Registry): void {
    this.#policy.registry = next;
  }

  principalOf(client: Client): Principal | undefined {
    return this.#principals.get(client);
  }

  readonly preConnect: Hook<'preConnect'> = (client, packet, done) => {
    packet.keepalive = clampKeepalive(packet.keepalive ?? 0, this.#options.limits);
    if (!packet.clientId) this.#emptyClientId.add(client);
    done(null, true);
  };

  readonly authenticate: Hook<'authenticate'> = (client, username, password, done) => {
    const { admission, metrics, limits } = this.#options;
    const will = (client as unknown as { _will?: PublishPacket | null })._will;
    try {
      const principal = checkLogin(
        { clientId: client.id, clientIdWasEmpty: this.#emptyClientId.has(client), cleanSession: client.clean, username, password, willTopic: will ? will.topic : undefined },
        this.#policy,
      );
      this.#principals.set(client, principal);
      this.#options.onLogin(client, principal);
      done(null, true);
    } catch (err) {
      if (!(err instanceof RefusedLogin)) throw err;
      metrics.loginFailed(err.reason);
      const address = this.#options.connections.addressOf(client);
      const log = this.#options.connections.clientLog(client);
      if (admission.recordLoginFailure(address)) log.warn({ banMs: limits.loginBanMs }, 'address banned after repeated failed logins');
      log.debug({ username, reason: err.reason, returnCode: err.returnCode }, 'login refused');
      const refusal = new Error(err.reason) as AuthenticateError;
      refusal.returnCode = err.returnCode as AuthenticateError['returnCode'];
      done(refusal, false);
    }
  };

  readonly authorizeSubscribe: Hook<'authorizeSubscribe'> = (client, subscription, done) => {
    const principal = this.#principals.get(client);
    if (principal === undefined || !mayHoldFilter(principal, subscription.topic, this.#options.limits)) {
      this.#options.metrics.dropped('acl_subscribe');
      done(null, null); // SUBACK 0x80 for this filter [MQTT-3.9.3-2]; the others are unaffected
      return;
    }
    let held = this.#held.get(client);
    if (held === undefined) this.#held.set(client, (held = new Set()));
    if (!held.has(subscription.topic) && held.size >= MAX_SUBSCRIPTIONS_PER_CLIENT) {
      this.#options.metrics.dropped('subscription_limit');
      done(null, null);
      return;
    }
    held.add(subscription.topic);
    done(null, subscription);
  };

  /** The client unsubscribed from `filters` (aedes' 'unsubscribe' event): they no longer count. */
  unsubscribed(client: Client, filters: string[]): void {
    const held = this.#held.get(client);
    for (const filter of filters) held?.delete(filter);
  }
}

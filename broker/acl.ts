/**
 * Who is logged in, and what they may publish and subscribe to. Pure functions, no aedes.
 *
 *   device X      publish: sensors/X/telemetry, sensors/X/status (no wildcards; Will only on its status)
 *                 subscribe: only inside sensors/X/
 *     with a tasmota payload mapping, also (Tasmota's own topics, Topic = X, FullTopic %prefix%/%topic%/):
 *                 publish: tele/X/+, stat/X/+, cmnd/X/+ (tele/X/SENSOR is read by ingest; Will: tele/X/LWT)
 *                 subscribe: cmnd/X/#
 *     with a shelly-gen2 payload mapping, also (the Shelly's MQTT prefix = X, never one of ours):
 *                 publish: X/# (X/events/rpc is read by ingest; Will: X/online)   subscribe: X/#
 *   A device never publishes on a topic that names another device (core/topics.ts parseTopic).
 *   svc:ingest    subscribe: sensors/+/telemetry, tele/+/SENSOR, +/events/rpc (or one device's); publish: pipeline/#
 *   svc:display   subscribe: pipeline/#, sensors/+/status, alerts/+; publish: nothing
 *   svc:alerts    subscribe: pipeline/#, sensors/+/status; publish: alerts/# (the alert state it keeps retained)
 *   svc:admin     everything ($SYS/# included), for tools such as MQTT Explorer and conformance suites
 */
import { hasWildcard, parseTopic, RESERVED_TOPIC_ROOTS, topics } from '../core/topics.ts';
import type { DropReason } from './codes.ts';

export type ServiceName = 'ingest' | 'display' | 'alerts' | 'admin';
export const SERVICE_PREFIX = 'svc:';

/**
 * The topic tree of an off-the-shelf device besides its sensors/X/ topics, from its payload mapping
 * (core/mappings.ts): Tasmota's tele|stat|cmnd/X/, or a Shelly's X/.
 */
export type DeviceTree = 'tasmota' | 'shelly';

export type Principal =
  | { kind: 'device'; deviceId: string; /** Verifier it logged in with: a rotation changes it. */ verifier: string; tree?: DeviceTree }
  | { kind: 'service'; service: ServiceName };

/** Who a subscription is granted to: all the subscribe ACL looks at (a device's verifier does not matter). */
export type Subscriber = { kind: 'device'; deviceId: string; tree?: DeviceTree } | { kind: 'service'; service: ServiceName };

/** The topic tree a payload mapping gives a device, if any. */
export function deviceTreeOf(format: string | undefined): DeviceTree | undefined {
  return format === 'tasmota' ? 'tasmota' : format === 'shelly-gen2' ? 'shelly' : undefined;
}

/** A Shelly's tree is X/#: only for an id that is none of the first levels that other topics start with. */
function shellyTreeAllowed(deviceId: string): boolean {
  return !RESERVED_TOPIC_ROOTS.has(deviceId);
}

export interface TopicLimits {
  maxTopicLevels: number;
  maxTopicBytes: number;
}

/** Topic or filter within the configured size ([MQTT-4.7.3-1]: at least one character). */
export function topicWithinLimits(topic: string, limits: TopicLimits): boolean {
  if (topic.length === 0 || Buffer.byteLength(topic) > limits.maxTopicBytes) return false;
  let levels = 1;
  for (let i = 0; i < topic.length; i++) if (topic.charCodeAt(i) === 47) levels++;
  return levels <= limits.maxTopicLevels;
}

/**
 * True when every topic `filter` can match is also matched by `pattern` (a filter too). Both are split
 * on "/"; "#" in the pattern covers the rest; "+" covers any one level (including a "+" in the filter).
 */
export function filterCovers(pattern: string, filter: string): boolean {
  const p = pattern.split('/');
  const f = filter.split('/');
  for (let i = 0; i < p.length; i++) {
    const pl = p[i]!;
    if (pl === '#') return true;
    const fl = f[i];
    if (fl === undefined || fl === '#') return false;
    if (pl === '+') continue;
    if (fl === '+' || fl !== pl) return false;
  }
  return f.length === p.length;
}

/** A well-formed filter: "#" only as the whole last level, "+" only as a whole level ([MQTT-4.7.1-2], [MQTT-4.7.1-3]). */
export function isValidFilter(filter: string): boolean {
  const levels = filter.split('/');
  return levels.every((level, i) =>
    level === '#' ? i === levels.length - 1 : level === '+' || (!level.includes('#') && !level.includes('+')),
  );
}

function subscribePatterns(principal: Subscriber): string[] {
  if (principal.kind === 'device') {
    const own = `${topics.telemetry(principal.deviceId).split('/').slice(0, 2).join('/')}/#`;
    if (principal.tree === 'tasmota') return [own, `cmnd/${principal.deviceId}/#`];
    if (principal.tree === 'shelly' && shellyTreeAllowed(principal.deviceId)) return [own, `${principal.deviceId}/#`];
    return [own];
  }
  switch (principal.service) {
    case 'ingest':
      return [...topics.ingestFilters];
    case 'display':
      return [topics.pipelineTree, topics.allStatus, topics.allAlerts];
    case 'alerts':
      return [topics.pipelineTree, topics.allStatus];
    case 'admin':
      return ['#'];
  }
}

export function maySubscribe(principal: Subscriber, filter: string): boolean {
  if (!isValidFilter(filter)) return false;
  if (principal.kind === 'service' && principal.service === 'admin') return true;
  // "$" topics (the broker's $SYS, or a literal "$share/…", which aedes does not implement) are for admin only.
  if (filter.startsWith('$')) return false;
  return subscribePatterns(principal).some((pattern) => filterCovers(pattern, filter));
}

/**
 * The subscribe ACL in one place: a filter `principal` may be granted, and so hold in its session
 * (within the topic limits, and allowed to it). Used for a SUBSCRIBE, for what a persistent session
 * stores and restores, and for a saved session read back (broker/session-guard.ts).
 */
export function mayHoldFilter(principal: Subscriber, filter: string, limits: TopicLimits): boolean {
  return topicWithinLimits(filter, limits) && maySubscribe(principal, filter);
}

/**
 * Whether `principal` may receive a message published on `topic`: some filter it may hold matches it.
 * A topic (no wildcards) is a filter that matches only itself, so this is `maySubscribe` of the topic.
 */
export function mayReceive(principal: Subscriber, topic: string): boolean {
  return maySubscribe(principal, topic);
}

/** `mayReceive` for one principal, with the verdicts remembered per topic (at most `maxRemembered`). */
export function receiveChecker(principal: Subscriber, maxRemembered = 1024): (topic: string) => boolean {
  const verdicts = new Map<string, boolean>();
  return (topic) => {
    let verdict = verdicts.get(topic);
    if (verdict === undefined) {
      verdict = mayReceive(principal, topic);
      if (verdicts.size >= maxRemembered) verdicts.clear();
      verdicts.set(topic, verdict);
    }
    return verdict;
  };
}

/** Whether a device's own tree (Tasmota's or a Shelly's) holds `topic`; never a topic naming another device. */
function inDeviceTree(deviceId: string, tree: DeviceTree | undefined, topic: string): boolean {
  if (tree === undefined) return false;
  const levels = topic.split('/');
  let inTree: boolean;
  if (tree === 'tasmota') inTree = levels.length === 3 && (levels[0] === 'tele' || levels[0] === 'stat' || levels[0] === 'cmnd') && levels[1] === deviceId && levels[2] !== '';
  else inTree = shellyTreeAllowed(deviceId) && levels.length >= 2 && levels[0] === deviceId && levels.every((level) => level !== '');
  if (!inTree) return false;
  // tele/<id>/rpc parses as the Shelly topic of a device "tele"; no such crossing is allowed.
  const parsed = parseTopic(topic);
  return parsed === undefined || parsed.deviceId === deviceId;
}

export function mayPublish(principal: Principal, topic: string): boolean {
  if (hasWildcard(topic) || topic.startsWith('$')) return false; // [MQTT-3.3.2-2]; $SYS is the broker's
  if (principal.kind === 'device') return topic === topics.telemetry(principal.deviceId) || topic === topics.status(principal.deviceId) || inDeviceTree(principal.deviceId, principal.tree, topic);
  switch (principal.service) {
    case 'ingest':
      return filterCovers(topics.pipelineTree, topic);
    case 'display':
      return false;
    case 'alerts':
      return filterCovers(topics.alertsTree, topic);
    case 'admin':
      return true;
  }
}

export type PublishRefusal = Extract<DropReason, 'acl_publish' | 'topic_limits'>;

/**
 * `topicWithinLimits` and `mayPublish` for one logged-in principal, with the verdicts remembered per
 * topic: every PUBLISH is checked, and a device publishes to the same one or two topics all the time.
 * A verdict depends only on the principal, the topic and the limits, none of which change during a
 * connection (a revoked or rotated device is disconnected, and logs in as a new principal). At most
 * `maxRemembered` topics are kept per connection; past that the memory starts again.
 */
export function publishChecker(principal: Principal, limits: TopicLimits, maxRemembered = 256): (topic: string) => PublishRefusal | undefined {
  const verdicts = new Map<string, PublishRefusal | 'allowed'>();
  return (topic) => {
    let verdict = verdicts.get(topic);
    if (verdict === undefined) {
      verdict = !topicWithinLimits(topic, limits) ? 'topic_limits' : mayPublish(principal, topic) ? 'allowed' : 'acl_publish';
      if (verdicts.size >= maxRemembered) verdicts.clear();
      verdicts.set(topic, verdict);
    }
    return verdict === 'allowed' ? undefined : verdict;
  };
}

/** A Will is a publish the broker makes later on the client's behalf; devices may leave one only on their own status topic. */
export function mayLeaveWill(principal: Principal, topic: string): boolean {
  if (principal.kind === 'device') {
    // Tasmota's LWT and a Shelly's "online" are where those devices put their Will.
    if (principal.tree === 'tasmota' && topic === `tele/${principal.deviceId}/LWT`) return true;
    if (principal.tree === 'shelly' && shellyTreeAllowed(principal.deviceId) && topic === `${principal.deviceId}/online`) return true;
    return topic === topics.status(principal.deviceId);
  }
  return mayPublish(principal, topic);
}

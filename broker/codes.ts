/**
 * The broker's answers, by name: the CONNACK return codes it sends, why it refuses a login, and why it
 * drops a packet or a connection. Code refers to these names, never to bare numbers or stray string
 * literals; docs/BROKER.md lists the same tables (a test keeps them in step).
 */

/**
 * CONNACK return codes of MQTT 3.1.1 (section 3.2.2.3, Table 3.1). After a non-zero code the server
 * closes the connection [MQTT-3.2.2-5], with Session Present 0 [MQTT-3.2.2-4].
 */
export const CONNACK = {
  /** 0x00 Connection accepted. */
  accepted: 0,
  /** 0x01 Unacceptable protocol level [MQTT-3.1.2-2]: aedes itself sends it for anything but 3.1 and 3.1.1 (MQTT 5 included). */
  unacceptableProtocol: 1,
  /** 0x02 Identifier rejected [MQTT-3.1.3-9]; also for a zero-byte client id with CleanSession 0 [MQTT-3.1.3-8]. */
  identifierRejected: 2,
  /** 0x03 Server unavailable. This broker never sends it. */
  serverUnavailable: 3,
  /** 0x04 Bad user name or password. */
  badUsernameOrPassword: 4,
  /** 0x05 Not authorized. */
  notAuthorized: 5,
} as const;
export type ConnackCode = (typeof CONNACK)[keyof typeof CONNACK];

/** The codes an `authenticate` refusal may carry: aedes passes 2 to 5 through and turns anything else into 5. */
export type LoginRefusalCode = typeof CONNACK.identifierRejected | typeof CONNACK.badUsernameOrPassword | typeof CONNACK.notAuthorized;

/**
 * Why a login was refused, the CONNACK code the client gets, and when. Counted in
 * `sensorpipe_broker_login_failures_total{reason}`; each failure also counts towards the address's ban.
 */
export const LOGIN_FAILURES = {
  anonymous: { connack: CONNACK.notAuthorized, when: 'the CONNECT has no user name or no password' },
  unknown_device: { connack: CONNACK.notAuthorized, when: 'the user name is not a registered device (nor svc:…)' },
  revoked_device: { connack: CONNACK.notAuthorized, when: 'the device is revoked, whatever the password' },
  bad_credentials: { connack: CONNACK.badUsernameOrPassword, when: 'wrong password for a device or a service account' },
  service_disabled: { connack: CONNACK.badUsernameOrPassword, when: 'svc:NAME where NAME is no service, or its password is not configured' },
  client_id_mismatch: {
    connack: CONNACK.identifierRejected,
    when: 'a device whose client id is not its device id; a service using a device id as client id; a service with an empty client id and CleanSession 0',
  },
  will_not_allowed: { connack: CONNACK.notAuthorized, when: 'the Will topic is over the topic limits, or one the client may not publish to (a device: only its own status topic)' },
} as const satisfies Record<string, { connack: LoginRefusalCode; when: string }>;
export type LoginFailure = keyof typeof LOGIN_FAILURES;

/** What the broker does with what it drops. */
export type DropAction = 'connection closed' | 'socket closed before reading' | 'accepted, not delivered' | 'SUBACK 0x80 for that filter';

/**
 * Every packet or connection the broker refuses or drops, counted in
 * `sensorpipe_broker_drops_total{reason}`: when it happens and what the client sees.
 */
export const DROP_REASONS = {
  // Admission (broker/admission.ts), at the TCP accept on every listener: closed before a byte is read.
  banned_address: { action: 'socket closed before reading', when: 'the address is banned after repeated failed logins' },
  connection_limit_total: { action: 'socket closed before reading', when: 'maxConnections are open, or the broker is shutting down' },
  connection_limit_address: { action: 'socket closed before reading', when: 'maxConnectionsPerAddress are open from this address' },
  // The listeners (broker/listeners.ts): one deadline from the TCP accept, whatever the transport.
  connect_timeout: { action: 'connection closed', when: 'no CONNECT within connectTimeoutMs of the TCP accept (TLS handshake and WebSocket upgrade included)' },
  // The packet guard (broker/packet-guard.ts), on the stream.
  packet_too_large: { action: 'connection closed', when: 'a fixed header announces a packet over maxPacketBytes' },
  malformed_length: { action: 'connection closed', when: 'a remaining length longer than four bytes [MQTT-2.2.3]' },
  not_connect_first: { action: 'connection closed', when: 'the first packet is not CONNECT [MQTT-3.1.0-1]' },
  // The publish gate (broker/publish-gate.ts).
  acl_publish: { action: 'connection closed', when: 'PUBLISH to a topic the client may not publish to (MQTT 3.1.1 has no negative PUBACK)' },
  topic_limits: { action: 'connection closed', when: 'PUBLISH to a topic over maxTopicLevels or maxTopicBytes' },
  rate_limited: { action: 'accepted, not delivered', when: 'a device publishes over its token bucket (anything but telemetry at QoS 1/2)' },
  rate_limited_disconnect: { action: 'connection closed', when: 'telemetry at QoS 1/2 over the rate: not acknowledged, so the device sends it again [MQTT-3.3.5-2]' },
  abuse_disconnect: { action: 'connection closed', when: 'publishAbuseDrops publishes in a row were rate_limited (that last one is counted as rate_limited too)' },
  // The subscribe ACL (broker/auth.ts).
  acl_subscribe: { action: 'SUBACK 0x80 for that filter', when: 'a filter the client may not subscribe to, or over the topic limits [MQTT-3.9.3-2]' },
  subscription_limit: { action: 'SUBACK 0x80 for that filter', when: 'a new filter for a connection that holds MAX_SUBSCRIPTIONS_PER_CLIENT already' },
  // Device status (broker/presence.ts).
  revoked_disconnect: { action: 'connection closed', when: 'the registry now says revoked, removed, or new credentials' },
} as const satisfies Record<string, { action: DropAction; when: string }>;
export type DropReason = keyof typeof DROP_REASONS;

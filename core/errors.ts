/**
 * The one registry of error codes. Every error that leaves a component carries one of these codes,
 * so operators, tests and clients can match on it. docs list them from here (see `describeErrorCodes`).
 *
 * disposition: `reject` — the input is bad and retrying it will not help (quarantine, HTTP 4xx);
 *              `retry`  — something we depend on is down; the same input may succeed later (spool).
 */
export const ERROR_CODES = {
  PAYLOAD_TOO_LARGE: { disposition: 'reject', http: 413, text: 'The message is larger than the protocol allows.' },
  PAYLOAD_INVALID: { disposition: 'reject', http: 400, text: 'The message is not valid UTF-8 JSON of the documented shape.' },
  TOPIC_INVALID: { disposition: 'reject', http: 400, text: 'The topic is not one of the documented topics.' },
  TOPIC_DEVICE_MISMATCH: { disposition: 'reject', http: 400, text: 'The device in the payload is not the device of the topic.' },
  DEVICE_UNKNOWN: { disposition: 'reject', http: 404, text: 'No device with this id is registered.' },
  DEVICE_REVOKED: { disposition: 'reject', http: 403, text: 'The device is registered but revoked.' },
  READING_BAD_SIGNATURE: { disposition: 'reject', http: 401, text: 'The signature does not verify with the device key.' },
  READING_REPLAYED: { disposition: 'reject', http: 409, text: 'A different message reuses a sequence number already accepted (a byte-identical copy is a redelivery: acknowledged, not written again).' },
  READING_TS_OUT_OF_RANGE: { disposition: 'reject', http: 400, text: 'The reading timestamp is too far in the future or the past.' },
  PAYLOAD_UNMAPPABLE: { disposition: 'reject', http: 422, text: "The payload is JSON, but the device's payload mapping cannot read a reading from it (wrong shape, no metric, a name that is not a valid metric name, too many metrics, a time without a UTC offset)." },
  READING_VALUE_INVALID: { disposition: 'reject', http: 422, text: "A value the device's payload mapping reads is not a finite number." },
  READING_SIGNATURE_UNEXPECTED: { disposition: 'reject', http: 400, text: 'A broker-authenticated device sent a payload carrying a signature: nothing it sends is ever stored as signed, so such a payload is refused (make the device signed to use signatures).' },
  POINT_REJECTED_BY_STORE: { disposition: 'reject', http: 422, text: 'The store refused the point permanently (e.g. a field type conflict).' },
  STORE_UNAVAILABLE: { disposition: 'retry', http: 503, text: 'The store could not be reached or answered with a transient error.' },
  QUERY_INVALID: { disposition: 'reject', http: 400, text: 'A query parameter is missing, malformed, given twice, or not one the route takes (the message names it).' },
  QUERY_RANGE_INVALID: { disposition: 'reject', http: 400, text: 'The time range is reversed, empty or too long for the requested resolution.' },
  QUERY_FUNCTION_UNKNOWN: { disposition: 'reject', http: 400, text: 'The aggregation function is not one of mean, min, max, last, count.' },
  AUTH_REQUIRED: { disposition: 'reject', http: 401, text: 'A valid token or credential is required.' },
  FORBIDDEN: { disposition: 'reject', http: 403, text: 'The credential is valid but not allowed to do this.' },
  NOT_FOUND: { disposition: 'reject', http: 404, text: 'No such resource.' },
  METHOD_NOT_ALLOWED: { disposition: 'reject', http: 405, text: 'The resource exists, but not with this HTTP method; the `Allow` header lists the methods it takes.' },
  UNSUPPORTED_MEDIA_TYPE: { disposition: 'reject', http: 415, text: 'The request body\'s `Content-Type` is not one the route accepts (admin API: application/json, and text/csv for a bulk add).' },
  LIMIT_EXCEEDED: { disposition: 'reject', http: 429, text: 'A configured limit (rate, size, count) was exceeded.' },
  SERVER_BUSY: { disposition: 'retry', http: 503, text: 'A capacity shared by every client (the display\'s concurrent history loads) is in use; retry after the Retry-After delay.' },
  CONFIG_INVALID: { disposition: 'reject', http: 500, text: 'A configuration value (environment variable or flag) is invalid.' },
  REGISTRY_CORRUPT: { disposition: 'reject', http: 500, text: 'The device registry file cannot be parsed; it is left untouched.' },
  REGISTRY_CONFLICT: { disposition: 'reject', http: 409, text: 'The registry change conflicts with its current contents (e.g. the id exists).' },
  REGISTRY_UNAVAILABLE: { disposition: 'retry', http: 503, text: 'The device registry lives in Redis (SENSORPIPE_REDIS_URL), and Redis cannot be reached; a running process keeps the last registry it loaded.' },
  DEVICE_INVALID: { disposition: 'reject', http: 400, text: 'A device id, metadata value, signature algorithm or bulk-file row is not valid (the same check in `sensorpipe devices` and the admin API).' },
  ALERT_RULES_INVALID: { disposition: 'reject', http: 500, text: 'The alerts rules file cannot be read or is not valid YAML/JSON of the documented shape; the rules in force before stay in force.' },
  ALERT_META_INVALID: { disposition: 'reject', http: 400, text: 'A clause of a device\'s `alerts` metadata is not of the documented grammar; it is skipped, the device\'s other rules apply.' },
  INTERNAL: { disposition: 'retry', http: 500, text: 'An unexpected internal error.' },
} as const satisfies Record<string, { disposition: 'reject' | 'retry'; http: number; text: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

/** Reasons a telemetry message can be quarantined with. A subset of ERROR_CODES. */
export const REJECT_REASONS = [
  'PAYLOAD_TOO_LARGE',
  'PAYLOAD_INVALID',
  'TOPIC_INVALID',
  'TOPIC_DEVICE_MISMATCH',
  'DEVICE_UNKNOWN',
  'DEVICE_REVOKED',
  'READING_BAD_SIGNATURE',
  'READING_REPLAYED',
  'READING_TS_OUT_OF_RANGE',
  'POINT_REJECTED_BY_STORE',
  'PAYLOAD_UNMAPPABLE',
  'READING_VALUE_INVALID',
  'READING_SIGNATURE_UNEXPECTED',
] as const satisfies readonly ErrorCode[];
export type RejectReason = (typeof REJECT_REASONS)[number];

export class SensorpipeError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>, options?: ErrorOptions) {
    super(message, options);
    this.name = 'SensorpipeError';
    this.code = code;
    this.details = details;
  }

  get disposition(): 'reject' | 'retry' {
    return ERROR_CODES[this.code].disposition;
  }

  get httpStatus(): number {
    return ERROR_CODES[this.code].http;
  }

  toJSON(): { code: ErrorCode; message: string; details?: Record<string, unknown> } {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }
}

export function isSensorpipeError(err: unknown, code?: ErrorCode): err is SensorpipeError {
  return err instanceof SensorpipeError && (code === undefined || err.code === code);
}

/** A Markdown table of every code, for the docs (kept current by a test). */
export function describeErrorCodes(): string {
  const rows = Object.entries(ERROR_CODES).map(
    ([code, e]) => `| \`${code}\` | ${e.disposition} | ${e.http} | ${e.text} |`,
  );
  return ['| code | disposition | HTTP | meaning |', '|---|---|---|---|', ...rows].join('\n');
}

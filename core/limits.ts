/**
 * Protocol limits (v1). They are part of the contract: firmware must stay within them, and every
 * receiver rejects what exceeds them. PROTOCOL.md quotes these numbers; a test keeps the two in step.
 */
export const LIMITS = {
  /** Largest telemetry payload, in bytes, checked before parsing. */
  maxPayloadBytes: 256 * 1024,
  /** Device id: a lowercase slug. */
  deviceIdPattern: /^[a-z0-9][a-z0-9-]{0,47}$/,
  deviceIdMaxLength: 48,
  /** Metric name: lowercase, starts with a letter, digits and underscores allowed. */
  metricNamePattern: /^[a-z][a-z0-9_]{0,31}$/,
  metricNameMaxLength: 32,
  maxMetricsPerReading: 32,
  maxReadingsPerMessage: 1000,
  /** Sequence numbers are non-negative integers that fit exactly in an IEEE-754 double. */
  maxSeq: Number.MAX_SAFE_INTEGER,
  /** Absolute sanity bounds on a timestamp (ms since the Unix epoch): 2000-01-01 .. 2100-01-01. */
  minTimestampMs: Date.UTC(2000, 0, 1),
  maxTimestampMs: Date.UTC(2100, 0, 1),
  /** Relative bounds, enforced by ingest (configurable there): defaults. */
  defaultMaxFutureMs: 5 * 60 * 1000,
  defaultMaxAgeMs: 7 * 24 * 60 * 60 * 1000,
  /** Metadata (site, model, profile) values. */
  metaValueMaxLength: 64,
} as const;

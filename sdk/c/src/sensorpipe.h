/*
 * sensorpipe device library for C (protocol v1, core/PROTOCOL.md).
 *
 * Builds the canonical bytes of a telemetry message, signs them (HMAC-SHA256, or Ed25519), writes the
 * JSON payload, keeps the sequence number in a store you provide (so it survives deep sleep and
 * reboots), and batches readings taken while offline in a fixed buffer you provide. C99, no heap, no
 * dependency but the bundled sp_sha256.c (and sp_ed25519.c). The MQTT client is yours: this library
 * hands you topic strings and payloads. See sdk/c/README.md.
 *
 * Not thread-safe: use one device (and its batch) from one task, or lock around calls.
 */
#ifndef SENSORPIPE_H
#define SENSORPIPE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SP_VERSION "1.0.0"
#define SP_PROTOCOL_VERSION 1

/* Metrics a device declares (its "schema"). Each reading carries one double per metric, so this
 * sets the size of every sp_reading: 20 + 8 * SP_MAX_METRICS bytes (padded to 8). The protocol
 * allows 32. Define it before including this header, or with -DSP_MAX_METRICS=n, the same for every
 * file of the build (Arduino: in a build flag; ESP-IDF: idf.py menuconfig is not used, set
 * target_compile_definitions). */
#ifndef SP_MAX_METRICS
#define SP_MAX_METRICS 8
#endif
#if SP_MAX_METRICS < 1 || SP_MAX_METRICS > 32
#error "SP_MAX_METRICS must be between 1 and 32 (PROTOCOL.md: at most 32 metrics per reading)"
#endif

#ifndef SP_WITH_ED25519
#define SP_WITH_ED25519 1
#endif

/* Protocol limits (PROTOCOL.md §3). */
#define SP_DEVICE_ID_MAX 48
#define SP_METRIC_NAME_MAX 32
#define SP_READINGS_PER_MESSAGE_MAX 1000
#define SP_SEQ_MAX 9007199254740991ULL /* 2^53 - 1 */
#define SP_TS_MIN 946684800000ULL      /* 2000-01-01T00:00:00Z, ms */
#define SP_TS_MAX 4102444800000ULL     /* 2100-01-01T00:00:00Z, ms */
#define SP_PAYLOAD_MAX 262144          /* bytes */

/* Buffer sizes for the strings this library writes (each includes the terminating NUL). */
#define SP_TOPIC_SIZE (8 + SP_DEVICE_ID_MAX + 11)             /* "sensors/" id "/telemetry" */
#define SP_STATUS_PAYLOAD_SIZE (64 + SP_DEVICE_ID_MAX + 20 + 12) /* a status message */
#define SP_NUMBER_SIZE 32                                     /* one JSON number */
#define SP_SIGNATURE_MAX 64                                   /* Ed25519; HMAC-SHA256 is 32 */

typedef enum {
  SP_OK = 0,
  SP_ERR_ARGUMENT = -1,    /* a NULL pointer or an index out of range */
  SP_ERR_DEVICE_ID = -2,   /* not ^[a-z0-9][a-z0-9-]{0,47}$, or reserved */
  SP_ERR_METRIC_NAME = -3, /* not ^[a-z][a-z0-9_]{0,31}$, reserved, duplicate, or too many metrics */
  SP_ERR_VALUE = -4,       /* NaN or infinite */
  SP_ERR_TS = -5,          /* timestamp outside 2000-01-01 .. 2100-01-01 (is the clock set?) */
  SP_ERR_SEQ = -6,         /* sequence numbers used up, or not strictly increasing in a message */
  SP_ERR_EMPTY = -7,       /* a reading without a value, or a message without a reading */
  SP_ERR_TOO_MANY = -8,    /* more than 1000 readings in one message */
  SP_ERR_BUFFER = -9,      /* the output buffer is too small (nothing usable was written) */
  SP_ERR_STORE = -10,      /* the sequence store's load or save failed */
  SP_ERR_UNSUPPORTED = -11 /* Ed25519 asked for, but built with SP_WITH_ED25519=0 */
} sp_err;

const char *sp_strerror(int err);

typedef enum { SP_HMAC_SHA256 = 0, SP_ED25519 = 1 } sp_alg;

/*
 * Where the device's next sequence number lives, so that it survives deep sleep and reboots (the
 * protocol requires seq to increase for ever: a reused seq is a replay, and is quarantined).
 * `load` reads it (a store never written must report 0); `save` writes it and returns only once it
 * is durable. Both return 0 on success. The library saves seq + 1 *before* it uses seq, so a crash
 * may skip a number (a gap, counted as a missing reading) but never reuses one.
 */
typedef struct {
  int (*load)(void *ctx, uint64_t *next_seq);
  int (*save)(void *ctx, uint64_t next_seq);
  void *ctx;
} sp_seq_store;

/* A store kept in one variable you own, e.g. `RTC_DATA_ATTR static uint64_t next_seq;` on an ESP32
 * (survives deep sleep, not a power cut: see README for NVS). */
sp_seq_store sp_seq_store_in_variable(uint64_t *variable);

typedef struct {
  char id[SP_DEVICE_ID_MAX + 1];
  uint8_t id_len;
  uint8_t alg; /* sp_alg */
  uint8_t key[32];        /* HMAC key, or Ed25519 private key (seed) */
  uint8_t public_key[32]; /* Ed25519: derived from the seed once, at init */
  uint8_t metric_count;
  uint8_t metric_len[SP_MAX_METRICS];
  uint8_t sorted[SP_MAX_METRICS]; /* metric indices by name, bytewise ascending (canonical order) */
  const char *metrics[SP_MAX_METRICS];
  sp_seq_store seq_store;
} sp_device;

/*
 * Sets up a device. `metric_names` are the metrics this device reports, in the order its payloads
 * list them; the strings must outlive the device (string literals do). The key is copied.
 */
int sp_device_init(sp_device *dev, const char *device_id, sp_alg alg, const uint8_t key[32],
                   const char *const *metric_names, size_t metric_count, const sp_seq_store *seq_store);
/* Overwrites the copied key. */
void sp_device_wipe(sp_device *dev);
/* The index of a metric by name, or -1. */
int sp_metric_index(const sp_device *dev, const char *name);

/* One reading: plain data, no pointers, so a buffer of them can sit in RTC memory. */
typedef struct {
  uint64_t seq;
  uint64_t ts_ms;
  uint32_t present; /* bit i set: values[i] holds metric i */
  double values[SP_MAX_METRICS];
} sp_reading;

/* Starts a reading taken at `ts_ms` (milliseconds since the Unix epoch), with no values yet. */
void sp_reading_begin(sp_reading *r, uint64_t ts_ms);
/* Sets metric `metric` (its index in the device's list). A metric not set is left out. */
int sp_reading_set(sp_reading *r, const sp_device *dev, unsigned metric, double value);
int sp_reading_set_named(sp_reading *r, const sp_device *dev, const char *name, double value);
/* Checks the reading and gives it the device's next sequence number (saved in the store first). */
int sp_take(const sp_device *dev, sp_reading *r);

/*
 * One message from `count` readings (1 to 1000, seq strictly increasing).
 * sp_canonical_bytes: the bytes that are signed (out may be NULL to learn the size in *out_len).
 * sp_sign: the signature (32 bytes HMAC-SHA256, 64 bytes Ed25519).
 * sp_payload: the complete MQTT payload, NUL-terminated; *out_len excludes the NUL.
 * sp_payload_size: the buffer size sp_payload needs, NUL included (0 if the readings are invalid).
 */
int sp_canonical_bytes(const sp_device *dev, const sp_reading *readings, size_t count, uint8_t *out,
                       size_t cap, size_t *out_len);
int sp_sign(const sp_device *dev, const sp_reading *readings, size_t count, uint8_t sig[SP_SIGNATURE_MAX],
            size_t *sig_len);
int sp_payload(const sp_device *dev, const sp_reading *readings, size_t count, char *out, size_t cap,
               size_t *out_len);
size_t sp_payload_size(const sp_device *dev, const sp_reading *readings, size_t count);

/* Topics (PROTOCOL.md §2) into a buffer of SP_TOPIC_SIZE bytes. */
int sp_topic_telemetry(const sp_device *dev, char *out, size_t cap);
int sp_topic_status(const sp_device *dev, char *out, size_t cap);

/*
 * A status message (§3.2): online (1) or offline (0), since when, and a reason or NULL. For the Last
 * Will: offline, reason "will", since = the time you connect. Publish it retained, QoS 1.
 */
int sp_status_payload(const sp_device *dev, int online, uint64_t since_ms, const char *reason, char *out,
                      size_t cap, size_t *out_len);

/*
 * Readings waiting to be sent, oldest first, in a fixed array you provide. When it is full, a new
 * reading replaces the oldest (counted in `dropped`; the server sees a gap in seq). Plain data plus one
 * pointer to the slots, so the whole of it (sp_batch and the slots) may live in RTC memory across deep
 * sleep: call sp_batch_resume() after waking.
 */
typedef struct {
  uint32_t magic;
  uint16_t capacity;
  uint16_t count;
  uint32_t dropped;
  sp_reading *slots;
} sp_batch;

void sp_batch_init(sp_batch *b, sp_reading *slots, size_t capacity);
/* Keeps what `b` holds if it is a batch over these slots (after deep sleep); otherwise
 * starts empty. Returns 1 when contents were kept, 0 when it started empty. */
int sp_batch_resume(sp_batch *b, sp_reading *slots, size_t capacity);
size_t sp_batch_count(const sp_batch *b);
/* Adds a reading already taken (sp_take). */
int sp_batch_push(sp_batch *b, const sp_reading *r);
/* sp_take, then sp_batch_push. */
int sp_batch_take(const sp_device *dev, sp_batch *b, sp_reading *r);
/*
 * The payload of the oldest readings that fit in `cap` bytes (at most `max_readings`, and at most
 * 1000; 0 means no limit but those). *included is how many, *last_seq the seq of the last one:
 * once the broker acknowledges the message (PUBACK), call sp_batch_ack(b, last_seq).
 */
int sp_batch_payload(const sp_device *dev, const sp_batch *b, size_t max_readings, char *out, size_t cap,
                     size_t *out_len, size_t *included, uint64_t *last_seq);
/* Removes every reading with seq <= last_seq (they were delivered). */
void sp_batch_ack(sp_batch *b, uint64_t last_seq);

/* A JSON number as JavaScript prints it (the shortest text that reads back as the same double;
 * -0 as 0). Returns its length; out holds SP_NUMBER_SIZE bytes. The value must be finite. */
size_t sp_format_number(double value, char out[SP_NUMBER_SIZE]);

/* Standard base64 with padding; returns the length written (without NUL), or 0 if cap is too small. */
size_t sp_base64(const uint8_t *data, size_t len, char *out, size_t cap);

#ifdef __cplusplus
}
#endif

#endif

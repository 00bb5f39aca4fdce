/*
 * sensorpipe device library: canonical bytes, signatures, JSON payloads, seq store and offline batch
 * (core/PROTOCOL.md, protocol v1). No heap; every buffer is the caller's.
 */
#include "sensorpipe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sp_sha256.h"
#if SP_WITH_ED25519
#include "sp_ed25519.h"
#endif

/* The canonical bytes carry IEEE-754 binary64 values; this library needs a 64-bit double
 * (on AVR, double is 32 bits: not supported). */
typedef char sp_double_is_64_bits[sizeof(double) == 8 ? 1 : -1];

#define SP_BATCH_MAGIC 0x53504231UL /* "SPB1" */

const char *sp_strerror(int err) {
  switch (err) {
    case SP_OK: return "ok";
    case SP_ERR_ARGUMENT: return "invalid argument";
    case SP_ERR_DEVICE_ID: return "invalid device id";
    case SP_ERR_METRIC_NAME: return "invalid metric name";
    case SP_ERR_VALUE: return "value is not a finite number";
    case SP_ERR_TS: return "timestamp out of range (is the clock set?)";
    case SP_ERR_SEQ: return "sequence number exhausted or not increasing";
    case SP_ERR_EMPTY: return "no values or no readings";
    case SP_ERR_TOO_MANY: return "more than 1000 readings in one message";
    case SP_ERR_BUFFER: return "output buffer too small";
    case SP_ERR_STORE: return "sequence store failed";
    case SP_ERR_UNSUPPORTED: return "ed25519 not built in";
    default: return "unknown error";
  }
}

/* ---- names -------------------------------------------------------------------------------------- */

/* Names of Object.prototype that the patterns let through (PROTOCOL.md §3, reserved names). */
static int is_reserved(const char *s) { return strcmp(s, "constructor") == 0 || strcmp(s, "prototype") == 0; }

static int valid_device_id(const char *s, size_t *len) {
  size_t i;
  if (s == NULL) return 0;
  for (i = 0; s[i] != '\0'; i++) {
    char c = s[i];
    int ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c == '-' && i > 0);
    if (!ok || i >= SP_DEVICE_ID_MAX) return 0;
  }
  *len = i;
  return i > 0 && !is_reserved(s);
}

static int valid_metric_name(const char *s, size_t *len) {
  size_t i;
  if (s == NULL) return 0;
  for (i = 0; s[i] != '\0'; i++) {
    char c = s[i];
    int ok = (c >= 'a' && c <= 'z') || (i > 0 && ((c >= '0' && c <= '9') || c == '_'));
    if (!ok || i >= SP_METRIC_NAME_MAX) return 0;
  }
  *len = i;
  return i > 0 && !is_reserved(s);
}

/* ---- seq store ---------------------------------------------------------------------------------- */

static int variable_load(void *ctx, uint64_t *next) {
  *next = *(uint64_t *)ctx;
  return 0;
}

static int variable_save(void *ctx, uint64_t next) {
  *(uint64_t *)ctx = next;
  return 0;
}

sp_seq_store sp_seq_store_in_variable(uint64_t *variable) {
  sp_seq_store store;
  store.load = variable_load;
  store.save = variable_save;
  store.ctx = variable;
  return store;
}

/* ---- device ------------------------------------------------------------------------------------- */

int sp_device_init(sp_device *dev, const char *device_id, sp_alg alg, const uint8_t key[32],
                   const char *const *metric_names, size_t metric_count, const sp_seq_store *seq_store) {
  size_t id_len, i, j;
  if (dev == NULL || key == NULL || metric_names == NULL || seq_store == NULL || seq_store->load == NULL ||
      seq_store->save == NULL) {
    return SP_ERR_ARGUMENT;
  }
  memset(dev, 0, sizeof *dev);
  if (!valid_device_id(device_id, &id_len)) return SP_ERR_DEVICE_ID;
  if (metric_count == 0 || metric_count > SP_MAX_METRICS) return SP_ERR_METRIC_NAME;
  if (alg != SP_HMAC_SHA256 && alg != SP_ED25519) return SP_ERR_ARGUMENT;
#if !SP_WITH_ED25519
  if (alg == SP_ED25519) return SP_ERR_UNSUPPORTED;
#endif
  for (i = 0; i < metric_count; i++) {
    size_t len;
    if (!valid_metric_name(metric_names[i], &len)) return SP_ERR_METRIC_NAME;
    for (j = 0; j < i; j++) {
      if (strcmp(metric_names[i], metric_names[j]) == 0) return SP_ERR_METRIC_NAME;
    }
    dev->metrics[i] = metric_names[i];
    dev->metric_len[i] = (uint8_t)len;
  }
  memcpy(dev->id, device_id, id_len + 1);
  dev->id_len = (uint8_t)id_len;
  dev->alg = (uint8_t)alg;
  dev->metric_count = (uint8_t)metric_count;
  memcpy(dev->key, key, 32);
  dev->seq_store = *seq_store;
  /* Canonical order: by name, bytewise ascending (strcmp compares as unsigned char). Insertion sort. */
  for (i = 0; i < metric_count; i++) {
    uint8_t idx = (uint8_t)i;
    j = i;
    while (j > 0 && strcmp(dev->metrics[dev->sorted[j - 1]], dev->metrics[idx]) > 0) {
      dev->sorted[j] = dev->sorted[j - 1];
      j--;
    }
    dev->sorted[j] = idx;
  }
#if SP_WITH_ED25519
  if (alg == SP_ED25519) sp_ed25519_public_key(dev->public_key, dev->key);
#endif
  return SP_OK;
}

void sp_device_wipe(sp_device *dev) {
  volatile uint8_t *p;
  size_t i;
  if (dev == NULL) return;
  p = dev->key; /* volatile, so the compiler keeps the stores */
  for (i = 0; i < sizeof dev->key; i++) p[i] = 0;
}

int sp_metric_index(const sp_device *dev, const char *name) {
  unsigned i;
  if (dev == NULL || name == NULL) return -1;
  for (i = 0; i < dev->metric_count; i++) {
    if (strcmp(dev->metrics[i], name) == 0) return (int)i;
  }
  return -1;
}

/* ---- readings ----------------------------------------------------------------------------------- */

/* Without <math.h>'s isfinite, which -ffast-math builds may fold to 1. */
static int is_finite(double v) { return v == v && v <= 1.7976931348623157e308 && v >= -1.7976931348623157e308; }

void sp_reading_begin(sp_reading *r, uint64_t ts_ms) {
  if (r == NULL) return;
  memset(r, 0, sizeof *r);
  r->ts_ms = ts_ms;
}

int sp_reading_set(sp_reading *r, const sp_device *dev, unsigned metric, double value) {
  if (r == NULL || dev == NULL || metric >= dev->metric_count) return SP_ERR_ARGUMENT;
  if (!is_finite(value)) return SP_ERR_VALUE;
  r->values[metric] = value;
  r->present |= (uint32_t)1 << metric;
  return SP_OK;
}

int sp_reading_set_named(sp_reading *r, const sp_device *dev, const char *name, double value) {
  int index = sp_metric_index(dev, name);
  if (index < 0) return SP_ERR_METRIC_NAME;
  return sp_reading_set(r, dev, (unsigned)index, value);
}

static uint32_t metric_mask(const sp_device *dev) {
  return dev->metric_count >= 32 ? 0xffffffffUL : (((uint32_t)1 << dev->metric_count) - 1);
}

static int check_reading_content(const sp_device *dev, const sp_reading *r) {
  unsigned m;
  if (r->present == 0) return SP_ERR_EMPTY;
  if ((r->present & ~metric_mask(dev)) != 0) return SP_ERR_ARGUMENT;
  for (m = 0; m < dev->metric_count; m++) {
    if ((r->present & ((uint32_t)1 << m)) && !is_finite(r->values[m])) return SP_ERR_VALUE;
  }
  if (r->ts_ms < SP_TS_MIN || r->ts_ms > SP_TS_MAX) return SP_ERR_TS;
  return SP_OK;
}

int sp_take(const sp_device *dev, sp_reading *r) {
  uint64_t next;
  int err;
  if (dev == NULL || r == NULL) return SP_ERR_ARGUMENT;
  err = check_reading_content(dev, r);
  if (err != SP_OK) return err;
  if (dev->seq_store.load(dev->seq_store.ctx, &next) != 0) return SP_ERR_STORE;
  if (next > SP_SEQ_MAX) return SP_ERR_SEQ;
  /* Write-ahead: the store moves past this seq before anyone sees it. */
  if (dev->seq_store.save(dev->seq_store.ctx, next + 1) != 0) return SP_ERR_STORE;
  r->seq = next;
  return SP_OK;
}

static int check_message(const sp_device *dev, const sp_reading *readings, size_t count) {
  size_t i;
  if (dev == NULL || readings == NULL) return SP_ERR_ARGUMENT;
  if (count == 0) return SP_ERR_EMPTY;
  if (count > SP_READINGS_PER_MESSAGE_MAX) return SP_ERR_TOO_MANY;
  for (i = 0; i < count; i++) {
    int err = check_reading_content(dev, &readings[i]);
    if (err != SP_OK) return err;
    if (readings[i].seq > SP_SEQ_MAX) return SP_ERR_SEQ;
    if (i > 0 && readings[i].seq <= readings[i - 1].seq) return SP_ERR_SEQ;
  }
  return SP_OK;
}

/* ---- canonical bytes (PROTOCOL.md §4), streamed into a sink ------------------------------------- */

typedef void (*sink_fn)(void *ctx, const uint8_t *data, size_t len);

static void put_u64(uint8_t out[8], uint64_t v) {
  int i;
  for (i = 7; i >= 0; i--) {
    out[i] = (uint8_t)(v & 0xff);
    v >>= 8;
  }
}

static void emit_canonical(const sp_device *dev, const sp_reading *readings, size_t count, sink_fn sink,
                           void *ctx) {
  uint8_t buf[17];
  size_t i;
  unsigned k;
  buf[0] = 'S'; buf[1] = 'P'; buf[2] = 'v'; buf[3] = '1';
  buf[4] = dev->id_len;
  sink(ctx, buf, 5);
  sink(ctx, (const uint8_t *)dev->id, dev->id_len);
  buf[0] = (uint8_t)(count >> 8);
  buf[1] = (uint8_t)count;
  sink(ctx, buf, 2);
  for (i = 0; i < count; i++) {
    const sp_reading *r = &readings[i];
    uint8_t metrics = 0;
    for (k = 0; k < dev->metric_count; k++) {
      if (r->present & ((uint32_t)1 << k)) metrics++;
    }
    put_u64(buf, r->seq);
    put_u64(buf + 8, r->ts_ms);
    buf[16] = metrics;
    sink(ctx, buf, 17);
    for (k = 0; k < dev->metric_count; k++) {
      unsigned m = dev->sorted[k];
      double value;
      uint64_t bits;
      if (!(r->present & ((uint32_t)1 << m))) continue;
      buf[0] = dev->metric_len[m];
      sink(ctx, buf, 1);
      sink(ctx, (const uint8_t *)dev->metrics[m], dev->metric_len[m]);
      value = r->values[m] + 0.0; /* -0 is signed as +0 (JSON prints -0 as 0) */
      memcpy(&bits, &value, sizeof bits);
      put_u64(buf, bits);
      sink(ctx, buf, 8);
    }
  }
}

typedef struct {
  uint8_t *out;
  size_t cap;
  size_t len;
} byte_writer;

static void byte_sink(void *ctx, const uint8_t *data, size_t len) {
  byte_writer *w = (byte_writer *)ctx;
  if (w->out != NULL && w->len + len <= w->cap) memcpy(w->out + w->len, data, len);
  w->len += len;
}

int sp_canonical_bytes(const sp_device *dev, const sp_reading *readings, size_t count, uint8_t *out,
                       size_t cap, size_t *out_len) {
  byte_writer w;
  int err = check_message(dev, readings, count);
  if (err != SP_OK) return err;
  w.out = out;
  w.cap = cap;
  w.len = 0;
  emit_canonical(dev, readings, count, byte_sink, &w);
  if (out_len != NULL) *out_len = w.len;
  return out == NULL || w.len <= cap ? SP_OK : SP_ERR_BUFFER;
}

static void hmac_sink(void *ctx, const uint8_t *data, size_t len) {
  sp_hmac_sha256_update((sp_hmac_sha256_ctx *)ctx, data, len);
}

#if SP_WITH_ED25519
typedef struct {
  const sp_device *dev;
  const sp_reading *readings;
  size_t count;
} canonical_message;

static void sha512_sink(void *ctx, const uint8_t *data, size_t len) {
  sp_sha512_update((sp_sha512_ctx *)ctx, data, len);
}

static void write_canonical_message(void *ctx, sp_sha512_ctx *hash) {
  const canonical_message *m = (const canonical_message *)ctx;
  emit_canonical(m->dev, m->readings, m->count, sha512_sink, hash);
}
#endif

static void sign_checked(const sp_device *dev, const sp_reading *readings, size_t count,
                         uint8_t sig[SP_SIGNATURE_MAX], size_t *sig_len) {
#if SP_WITH_ED25519
  if (dev->alg == SP_ED25519) {
    canonical_message m;
    m.dev = dev;
    m.readings = readings;
    m.count = count;
    sp_ed25519_sign(sig, dev->key, dev->public_key, write_canonical_message, &m);
    *sig_len = 64;
    return;
  }
#endif
  {
    sp_hmac_sha256_ctx h;
    sp_hmac_sha256_init(&h, dev->key, sizeof dev->key);
    emit_canonical(dev, readings, count, hmac_sink, &h);
    sp_hmac_sha256_final(&h, sig);
    *sig_len = 32;
  }
}

int sp_sign(const sp_device *dev, const sp_reading *readings, size_t count, uint8_t sig[SP_SIGNATURE_MAX],
            size_t *sig_len) {
  size_t len;
  int err = check_message(dev, readings, count);
  if (err != SP_OK) return err;
  if (sig == NULL) return SP_ERR_ARGUMENT;
  sign_checked(dev, readings, count, sig, &len);
  if (sig_len != NULL) *sig_len = len;
  return SP_OK;
}

/* ---- text --------------------------------------------------------------------------------------- */

size_t sp_base64(const uint8_t *data, size_t len, char *out, size_t cap) {
  static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t i, o = 0, need = (len + 2) / 3 * 4;
  if (out == NULL || need + 1 > cap) return 0;
  for (i = 0; i + 2 < len; i += 3) {
    uint32_t v = ((uint32_t)data[i] << 16) | ((uint32_t)data[i + 1] << 8) | data[i + 2];
    out[o++] = alphabet[(v >> 18) & 63];
    out[o++] = alphabet[(v >> 12) & 63];
    out[o++] = alphabet[(v >> 6) & 63];
    out[o++] = alphabet[v & 63];
  }
  if (i < len) {
    uint32_t v = (uint32_t)data[i] << 16;
    if (i + 1 < len) v |= (uint32_t)data[i + 1] << 8;
    out[o++] = alphabet[(v >> 18) & 63];
    out[o++] = alphabet[(v >> 12) & 63];
    out[o++] = i + 1 < len ? alphabet[(v >> 6) & 63] : '=';
    out[o++] = '=';
  }
  out[o] = '\0';
  return o;
}

/* Splits printf's "[-]d.ddde[+-]x" into its digits and decimal exponent. */
static int parse_scientific(const char *sci, char digits[20], int *exponent) {
  int k = 0;
  const char *p = sci;
  if (*p == '-') p++;
  for (; *p != 'e' && *p != '\0'; p++) {
    if (*p >= '0' && *p <= '9' && k < 20) digits[k++] = *p;
  }
  *exponent = *p == 'e' ? atoi(p + 1) : 0;
  return k;
}

/* Reads digits (d1.d2d3... x 10^exponent) back as a double. */
static double read_back(int negative, const char *digits, int k, int exponent) {
  char text[40];
  int i, o = 0;
  if (negative) text[o++] = '-';
  text[o++] = digits[0];
  text[o++] = '.';
  for (i = 1; i < k; i++) text[o++] = digits[i];
  sprintf(text + o, "e%d", exponent);
  return strtod(text, NULL);
}

/*
 * ECMAScript Number::toString (what JSON.stringify prints): the shortest digit string that reads back
 * as the same double, laid out in fixed notation for exponents -7 < e < 21, else as d.ddde±x. The
 * digits come from printf's correctly rounded %.*e at the smallest precision that round-trips through
 * strtod. Where the correctly rounded digits miss (just above a power of two, where the doubles below
 * are twice as dense, e.g. 2^-842), the next digit string up may still hit, and is the one JavaScript
 * prints. PROTOCOL.md §4 needs only the round trip; the JavaScript layout makes payloads
 * byte-identical to the reference implementation's.
 */
size_t sp_format_number(double value, char out[SP_NUMBER_SIZE]) {
  char sci[40];
  char digits[20];
  int precision, k = 0, exponent = 0, n, i, negative = value < 0;
  size_t o = 0;
  if (value == 0) { /* also -0, which JSON.stringify prints as 0 */
    out[0] = '0';
    out[1] = '\0';
    return 1;
  }
  for (precision = 1; precision <= 17; precision++) {
    snprintf(sci, sizeof sci, "%.*e", precision - 1, value);
    k = parse_scientific(sci, digits, &exponent);
    if (strtod(sci, NULL) == value) break;
    /* the next k-digit string up (in magnitude) */
    for (i = k - 1; i >= 0 && digits[i] == '9'; i--) digits[i] = '0';
    if (i >= 0) {
      digits[i]++;
    } else {
      digits[0] = '1';
      exponent++;
    }
    if (read_back(negative, digits, k, exponent) == value) break;
  }
  while (k > 1 && digits[k - 1] == '0') k--;
  if (negative) out[o++] = '-';
  n = exponent + 1; /* value = 0.d1d2...dk * 10^n */
  if (k <= n && n <= 21) {
    for (i = 0; i < k; i++) out[o++] = digits[i];
    for (i = k; i < n; i++) out[o++] = '0';
  } else if (0 < n && n <= 21) {
    for (i = 0; i < n; i++) out[o++] = digits[i];
    out[o++] = '.';
    for (i = n; i < k; i++) out[o++] = digits[i];
  } else if (-6 < n && n <= 0) {
    out[o++] = '0';
    out[o++] = '.';
    for (i = 0; i < -n; i++) out[o++] = '0';
    for (i = 0; i < k; i++) out[o++] = digits[i];
  } else {
    int e = n - 1;
    out[o++] = digits[0];
    if (k > 1) {
      out[o++] = '.';
      for (i = 1; i < k; i++) out[o++] = digits[i];
    }
    out[o++] = 'e';
    out[o++] = e < 0 ? '-' : '+';
    o += (size_t)snprintf(out + o, SP_NUMBER_SIZE - o, "%d", e < 0 ? -e : e);
  }
  out[o] = '\0';
  return o;
}

/* Appends text while it fits, and counts the length either way (so a NULL buffer measures). */
typedef struct {
  char *out;
  size_t cap;
  size_t len;
} text_writer;

static void put(text_writer *w, const char *s, size_t len) {
  if (w->out != NULL && w->len + len < w->cap) memcpy(w->out + w->len, s, len);
  w->len += len;
}

static void puts_(text_writer *w, const char *s) { put(w, s, strlen(s)); }

static void put_u64_decimal(text_writer *w, uint64_t v) {
  char tmp[21];
  int i = 20;
  tmp[i] = '\0';
  do {
    tmp[--i] = (char)('0' + (int)(v % 10));
    v /= 10;
  } while (v != 0);
  puts_(w, tmp + i);
}

static int finish(text_writer *w, size_t *out_len) {
  if (out_len != NULL) *out_len = w->len;
  if (w->out == NULL) return SP_OK;
  if (w->len + 1 > w->cap) {
    if (w->cap > 0) w->out[0] = '\0';
    return SP_ERR_BUFFER;
  }
  w->out[w->len] = '\0';
  return SP_OK;
}

static void put_reading_json(text_writer *w, const sp_device *dev, const sp_reading *r) {
  char number[SP_NUMBER_SIZE];
  unsigned m;
  int first = 1;
  puts_(w, "{\"seq\":");
  put_u64_decimal(w, r->seq);
  puts_(w, ",\"ts\":");
  put_u64_decimal(w, r->ts_ms);
  puts_(w, ",\"values\":{");
  for (m = 0; m < dev->metric_count; m++) {
    if (!(r->present & ((uint32_t)1 << m))) continue;
    if (!first) puts_(w, ",");
    first = 0;
    puts_(w, "\"");
    put(w, dev->metrics[m], dev->metric_len[m]);
    puts_(w, "\":");
    put(w, number, sp_format_number(r->values[m], number));
  }
  puts_(w, "}}");
}

static size_t reading_json_len(const sp_device *dev, const sp_reading *r) {
  text_writer w;
  w.out = NULL;
  w.cap = 0;
  w.len = 0;
  put_reading_json(&w, dev, r);
  return w.len;
}

/* {"v":1,"device":"<id>","readings":[ ... ],"sig":"<base64>"} around the readings. */
static size_t envelope_len(const sp_device *dev) {
  size_t sig_b64 = dev->alg == SP_ED25519 ? 88 : 44;
  return strlen("{\"v\":1,\"device\":\"\",\"readings\":[],\"sig\":\"\"}") + dev->id_len + sig_b64;
}

static int write_payload(const sp_device *dev, const sp_reading *readings, size_t count, char *out, size_t cap,
                         size_t *out_len) {
  uint8_t sig[SP_SIGNATURE_MAX];
  char sig_b64[89];
  size_t sig_len, i;
  text_writer w;
  w.out = out;
  w.cap = cap;
  w.len = 0;
  puts_(&w, "{\"v\":1,\"device\":\"");
  put(&w, dev->id, dev->id_len);
  puts_(&w, "\",\"readings\":[");
  for (i = 0; i < count; i++) {
    if (i > 0) puts_(&w, ",");
    put_reading_json(&w, dev, &readings[i]);
  }
  puts_(&w, "],\"sig\":\"");
  sign_checked(dev, readings, count, sig, &sig_len);
  put(&w, sig_b64, sp_base64(sig, sig_len, sig_b64, sizeof sig_b64));
  puts_(&w, "\"}");
  return finish(&w, out_len);
}

size_t sp_payload_size(const sp_device *dev, const sp_reading *readings, size_t count) {
  size_t len, i;
  if (check_message(dev, readings, count) != SP_OK) return 0;
  len = envelope_len(dev) + (count - 1) + 1;
  for (i = 0; i < count; i++) len += reading_json_len(dev, &readings[i]);
  return len;
}

int sp_payload(const sp_device *dev, const sp_reading *readings, size_t count, char *out, size_t cap,
               size_t *out_len) {
  int err = check_message(dev, readings, count);
  if (err != SP_OK) return err;
  if (out == NULL) return SP_ERR_ARGUMENT;
  if (sp_payload_size(dev, readings, count) > cap) {
    if (cap > 0) out[0] = '\0';
    return SP_ERR_BUFFER;
  }
  return write_payload(dev, readings, count, out, cap, out_len);
}

static int topic(const sp_device *dev, const char *suffix, char *out, size_t cap) {
  text_writer w;
  if (dev == NULL || out == NULL) return SP_ERR_ARGUMENT;
  w.out = out;
  w.cap = cap;
  w.len = 0;
  puts_(&w, "sensors/");
  put(&w, dev->id, dev->id_len);
  puts_(&w, suffix);
  return finish(&w, NULL);
}

int sp_topic_telemetry(const sp_device *dev, char *out, size_t cap) { return topic(dev, "/telemetry", out, cap); }

int sp_topic_status(const sp_device *dev, char *out, size_t cap) { return topic(dev, "/status", out, cap); }

int sp_status_payload(const sp_device *dev, int online, uint64_t since_ms, const char *reason, char *out,
                      size_t cap, size_t *out_len) {
  static const char *const reasons[] = {"connected", "clean", "will", "keepalive", "socket", "revoked", "takeover", "shutdown"};
  text_writer w;
  size_t i;
  int known = reason == NULL;
  if (dev == NULL || out == NULL) return SP_ERR_ARGUMENT;
  for (i = 0; !known && i < sizeof reasons / sizeof reasons[0]; i++) known = strcmp(reason, reasons[i]) == 0;
  if (!known) return SP_ERR_ARGUMENT;
  if (since_ms < SP_TS_MIN || since_ms > SP_TS_MAX) return SP_ERR_TS;
  w.out = out;
  w.cap = cap;
  w.len = 0;
  puts_(&w, "{\"v\":1,\"device\":\"");
  put(&w, dev->id, dev->id_len);
  puts_(&w, online ? "\",\"state\":\"online\",\"since\":" : "\",\"state\":\"offline\",\"since\":");
  put_u64_decimal(&w, since_ms);
  if (reason != NULL) {
    puts_(&w, ",\"reason\":\"");
    puts_(&w, reason);
    puts_(&w, "\"");
  }
  puts_(&w, "}");
  return finish(&w, out_len);
}

/* ---- batch -------------------------------------------------------------------------------------- */

void sp_batch_init(sp_batch *b, sp_reading *slots, size_t capacity) {
  if (b == NULL) return;
  b->magic = SP_BATCH_MAGIC;
  b->capacity = (uint16_t)(capacity > 65535 ? 65535 : capacity);
  b->count = 0;
  b->dropped = 0;
  b->slots = slots;
}

int sp_batch_resume(sp_batch *b, sp_reading *slots, size_t capacity) {
  size_t i;
  int ok;
  if (b == NULL) return 0;
  ok = b->magic == SP_BATCH_MAGIC && b->slots == slots && b->capacity == (capacity > 65535 ? 65535 : capacity) &&
       b->count <= b->capacity;
  for (i = 1; ok && i < b->count; i++) ok = slots[i].seq > slots[i - 1].seq;
  if (!ok) sp_batch_init(b, slots, capacity);
  return ok;
}

size_t sp_batch_count(const sp_batch *b) { return b == NULL ? 0 : b->count; }

int sp_batch_push(sp_batch *b, const sp_reading *r) {
  if (b == NULL || r == NULL || b->slots == NULL || b->capacity == 0) return SP_ERR_ARGUMENT;
  if (b->count > 0 && r->seq <= b->slots[b->count - 1].seq) return SP_ERR_SEQ;
  if (b->count == b->capacity) {
    memmove(b->slots, b->slots + 1, (size_t)(b->count - 1) * sizeof *b->slots);
    b->count--;
    b->dropped++;
  }
  b->slots[b->count++] = *r;
  return SP_OK;
}

int sp_batch_take(const sp_device *dev, sp_batch *b, sp_reading *r) {
  int err;
  if (b == NULL || b->slots == NULL || b->capacity == 0) return SP_ERR_ARGUMENT;
  err = sp_take(dev, r);
  return err != SP_OK ? err : sp_batch_push(b, r);
}

int sp_batch_payload(const sp_device *dev, const sp_batch *b, size_t max_readings, char *out, size_t cap,
                     size_t *out_len, size_t *included, uint64_t *last_seq) {
  size_t n = 0, size, limit;
  int err;
  if (dev == NULL || b == NULL || out == NULL) return SP_ERR_ARGUMENT;
  if (b->count == 0) return SP_ERR_EMPTY;
  limit = b->count;
  if (limit > SP_READINGS_PER_MESSAGE_MAX) limit = SP_READINGS_PER_MESSAGE_MAX;
  if (max_readings > 0 && limit > max_readings) limit = max_readings;
  size = envelope_len(dev) + 1; /* NUL */
  while (n < limit) {
    size_t more = reading_json_len(dev, &b->slots[n]) + (n > 0 ? 1 : 0);
    if (size + more > cap || size + more - 1 > SP_PAYLOAD_MAX) break;
    size += more;
    n++;
  }
  if (n == 0) return SP_ERR_BUFFER;
  err = sp_payload(dev, b->slots, n, out, cap, out_len);
  if (err != SP_OK) return err;
  if (included != NULL) *included = n;
  if (last_seq != NULL) *last_seq = b->slots[n - 1].seq;
  return SP_OK;
}

void sp_batch_ack(sp_batch *b, uint64_t last_seq) {
  size_t n = 0;
  if (b == NULL || b->slots == NULL) return;
  while (n < b->count && b->slots[n].seq <= last_seq) n++;
  if (n == 0) return;
  memmove(b->slots, b->slots + n, (size_t)(b->count - n) * sizeof *b->slots);
  b->count = (uint16_t)(b->count - n);
}

/*
 * Host test of the sensorpipe C library against the protocol's test vectors.
 *
 *   host_test VECTORS
 *
 * VECTORS is core/PROTOCOL.md itself (the JSON block between its vectors markers), or a JSON file:
 * the vectors array, or {"vectors": [...], "numbers": [{"bits": "<16 hex>", "text": "<JS String(x)>"}]}
 * (test/sdk/c.test.ts writes one from core/vectors.ts). For each vector it builds the message through
 * the public API from the vector's body and checks, byte for byte, the canonical bytes, the signature,
 * the Ed25519 public key, and the payload (sp_payload and sp_batch_payload). Then library unit checks.
 * Prints TAP-like lines; exits 0 only if every check passed and at least one vector was read.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sensorpipe.h"
#include "sp_sha256.h"

/* ---- a small JSON reader (enough for the vectors file; no heap) ---------------------------------- */

enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

typedef struct {
  int type;
  const char *text; /* J_STR: decoded, NUL-terminated; J_NUM: the literal, NUL-terminated */
  const char *key;  /* member name inside an object */
  int child;        /* first element or member, -1 */
  int next;         /* next sibling, -1 */
} jnode;

#define MAX_NODES 20000
#define MAX_TEXT (1 << 20)
#define MAX_FILE (1 << 21)

static jnode nodes[MAX_NODES];
static int node_count;
static char text_pool[MAX_TEXT];
static size_t text_used;
static char file_buf[MAX_FILE];
static const char *src;
static const char *parse_error;

static void skip_ws(void) {
  while (*src == ' ' || *src == '\n' || *src == '\r' || *src == '\t') src++;
}

static char *pool_alloc(size_t n) {
  char *p;
  if (text_used + n > MAX_TEXT) {
    parse_error = "text pool full";
    return NULL;
  }
  p = text_pool + text_used;
  text_used += n;
  return p;
}

static void put_utf8(char **o, unsigned cp) {
  if (cp < 0x80) {
    *(*o)++ = (char)cp;
  } else if (cp < 0x800) {
    *(*o)++ = (char)(0xc0 | (cp >> 6));
    *(*o)++ = (char)(0x80 | (cp & 0x3f));
  } else {
    *(*o)++ = (char)(0xe0 | (cp >> 12));
    *(*o)++ = (char)(0x80 | ((cp >> 6) & 0x3f));
    *(*o)++ = (char)(0x80 | (cp & 0x3f));
  }
}

static const char *parse_string(void) {
  const char *start = ++src, *p;
  char *out, *o;
  for (p = start; *p != '"'; p++) {
    if (*p == '\0') {
      parse_error = "unterminated string";
      return NULL;
    }
    if (*p == '\\') p++;
  }
  out = pool_alloc((size_t)(p - start) + 1);
  if (out == NULL) return NULL;
  for (o = out; *src != '"'; src++) {
    if (*src != '\\') {
      *o++ = *src;
      continue;
    }
    src++;
    switch (*src) {
      case 'n': *o++ = '\n'; break;
      case 't': *o++ = '\t'; break;
      case 'r': *o++ = '\r'; break;
      case 'b': *o++ = '\b'; break;
      case 'f': *o++ = '\f'; break;
      case 'u': {
        char hex[5];
        memcpy(hex, src + 1, 4);
        hex[4] = '\0';
        put_utf8(&o, (unsigned)strtoul(hex, NULL, 16)); /* BMP only: enough for the vectors */
        src += 4;
        break;
      }
      default: *o++ = *src; break; /* \" \\ \/ */
    }
  }
  *o = '\0';
  src++;
  return out;
}

static int parse_value(void);

static int new_node(int type) {
  if (node_count >= MAX_NODES) {
    parse_error = "too many nodes";
    return -1;
  }
  nodes[node_count].type = type;
  nodes[node_count].text = NULL;
  nodes[node_count].key = NULL;
  nodes[node_count].child = -1;
  nodes[node_count].next = -1;
  return node_count++;
}

static int parse_container(int type, char close) {
  int self = new_node(type), last = -1;
  if (self < 0) return -1;
  src++;
  skip_ws();
  if (*src == close) {
    src++;
    return self;
  }
  for (;;) {
    const char *key = NULL;
    int child;
    skip_ws();
    if (type == J_OBJ) {
      if (*src != '"') {
        parse_error = "expected a member name";
        return -1;
      }
      key = parse_string();
      if (key == NULL) return -1;
      skip_ws();
      if (*src++ != ':') {
        parse_error = "expected ':'";
        return -1;
      }
    }
    child = parse_value();
    if (child < 0) return -1;
    nodes[child].key = key;
    if (last < 0) nodes[self].child = child; else nodes[last].next = child;
    last = child;
    skip_ws();
    if (*src == ',') {
      src++;
      continue;
    }
    if (*src == close) {
      src++;
      return self;
    }
    parse_error = "expected ',' or a closing bracket";
    return -1;
  }
}

static int parse_value(void) {
  int n;
  skip_ws();
  if (*src == '{') return parse_container(J_OBJ, '}');
  if (*src == '[') return parse_container(J_ARR, ']');
  if (*src == '"') {
    n = new_node(J_STR);
    if (n >= 0) nodes[n].text = parse_string();
    return n >= 0 && nodes[n].text != NULL ? n : -1;
  }
  if (strncmp(src, "true", 4) == 0 || strncmp(src, "false", 5) == 0 || strncmp(src, "null", 4) == 0) {
    n = new_node(*src == 'n' ? J_NULL : J_BOOL);
    if (n >= 0) nodes[n].text = *src == 't' ? "true" : *src == 'f' ? "false" : "null";
    src += *src == 'f' ? 5 : 4;
    return n;
  }
  if (*src == '-' || (*src >= '0' && *src <= '9')) {
    const char *start = src;
    char *copy;
    while (*src == '-' || *src == '+' || *src == '.' || *src == 'e' || *src == 'E' || (*src >= '0' && *src <= '9')) src++;
    n = new_node(J_NUM);
    copy = pool_alloc((size_t)(src - start) + 1);
    if (n < 0 || copy == NULL) return -1;
    memcpy(copy, start, (size_t)(src - start));
    copy[src - start] = '\0';
    nodes[n].text = copy;
    return n;
  }
  parse_error = "unexpected character";
  return -1;
}

static int member(int obj, const char *key) {
  int c;
  if (obj < 0 || nodes[obj].type != J_OBJ) return -1;
  for (c = nodes[obj].child; c >= 0; c = nodes[c].next) {
    if (strcmp(nodes[c].key, key) == 0) return c;
  }
  return -1;
}

static const char *member_text(int obj, const char *key) {
  int m = member(obj, key);
  return m >= 0 && nodes[m].text != NULL ? nodes[m].text : NULL;
}

/* ---- reporting ---------------------------------------------------------------------------------- */

static int checks, failures;

static void check(int ok, const char *what, const char *name, const char *detail) {
  checks++;
  if (ok) {
    printf("ok %d - %s: %s\n", checks, name, what);
  } else {
    failures++;
    printf("not ok %d - %s: %s%s%s\n", checks, name, what, detail != NULL ? "\n#   " : "", detail != NULL ? detail : "");
  }
}

static void check_text(const char *what, const char *name, const char *got, const char *want) {
  int ok = strcmp(got, want) == 0;
  check(ok, what, name, NULL);
  if (!ok) printf("#   got  %s\n#   want %s\n", got, want);
}

static void to_hex(const uint8_t *data, size_t len, char *out) {
  static const char digits[] = "0123456789abcdef";
  size_t i;
  for (i = 0; i < len; i++) {
    out[2 * i] = digits[data[i] >> 4];
    out[2 * i + 1] = digits[data[i] & 15];
  }
  out[2 * len] = '\0';
}

static int from_hex(const char *hex, uint8_t *out, size_t cap) {
  size_t i, len = strlen(hex);
  if (len % 2 != 0 || len / 2 > cap) return -1;
  for (i = 0; i < len / 2; i++) {
    char byte[3];
    byte[0] = hex[2 * i];
    byte[1] = hex[2 * i + 1];
    byte[2] = '\0';
    out[i] = (uint8_t)strtoul(byte, NULL, 16);
  }
  return (int)(len / 2);
}

/* ---- one vector --------------------------------------------------------------------------------- */

static uint8_t canonical[1 << 16];
static char payload[1 << 17];
static char hex[1 << 17];
static sp_reading readings[64];
static sp_reading slots[64];

static void check_vector(int v) {
  const char *name = member_text(v, "name"), *alg = member_text(v, "alg"), *key_hex = member_text(v, "keyHex");
  const char *canonical_hex = member_text(v, "canonicalHex"), *sig_b64 = member_text(v, "signatureBase64");
  const char *want_payload = member_text(v, "payload"), *public_hex = member_text(v, "publicKeyHex");
  int body = member(v, "body"), list = member(body, "readings"), r, m;
  const char *device = member_text(body, "device");
  const char *metric_names[SP_MAX_METRICS];
  size_t metric_count = 0, count = 0, len, sig_len, included;
  uint8_t key[32], sig[SP_SIGNATURE_MAX];
  char sig_text[100];
  uint64_t next_seq = 0, last_seq;
  sp_seq_store store = sp_seq_store_in_variable(&next_seq);
  sp_device dev;
  sp_batch batch;
  int err;

  if (name == NULL || alg == NULL || key_hex == NULL || canonical_hex == NULL || sig_b64 == NULL ||
      want_payload == NULL || device == NULL || list < 0) {
    check(0, "vector has every field", name != NULL ? name : "?", NULL);
    return;
  }
  if (from_hex(key_hex, key, sizeof key) != 32) {
    check(0, "key is 32 bytes of hex", name, key_hex);
    return;
  }
  /* The device's metric list: every metric of the body, in order of first appearance. */
  for (r = nodes[list].child; r >= 0; r = nodes[r].next) {
    for (m = nodes[member(r, "values")].child; m >= 0; m = nodes[m].next) {
      size_t i;
      for (i = 0; i < metric_count && strcmp(metric_names[i], nodes[m].key) != 0; i++) continue;
      if (i < metric_count) continue;
      if (metric_count == SP_MAX_METRICS) {
        check(0, "metrics fit SP_MAX_METRICS", name, nodes[m].key);
        return;
      }
      metric_names[metric_count++] = nodes[m].key;
    }
  }
  err = sp_device_init(&dev, device, strcmp(alg, "ed25519") == 0 ? SP_ED25519 : SP_HMAC_SHA256, key, metric_names,
                       metric_count, &store);
  check(err == SP_OK, "sp_device_init", name, sp_strerror(err));
  if (err != SP_OK) return;
  if (public_hex != NULL) {
    to_hex(dev.public_key, 32, hex);
    check_text("ed25519 public key from the seed", name, hex, public_hex);
  }

  /* Each reading through the public API: begin, set values, take (the seq comes from the store). */
  sp_batch_init(&batch, slots, sizeof slots / sizeof slots[0]);
  for (r = nodes[list].child; r >= 0; r = nodes[r].next) {
    uint64_t seq = strtoull(member_text(r, "seq"), NULL, 10);
    sp_reading *reading = &readings[count++];
    sp_reading_begin(reading, strtoull(member_text(r, "ts"), NULL, 10));
    for (m = nodes[member(r, "values")].child; m >= 0; m = nodes[m].next) {
      err = sp_reading_set_named(reading, &dev, nodes[m].key, strtod(nodes[m].text, NULL));
      if (err != SP_OK) check(0, "sp_reading_set_named", name, sp_strerror(err));
    }
    next_seq = seq; /* the store holds the vector's seq, as if the device had counted up to it */
    err = sp_batch_take(&dev, &batch, reading);
    check(err == SP_OK && reading->seq == seq && next_seq == seq + 1, "sp_batch_take assigns the stored seq and saves seq + 1",
          name, sp_strerror(err));
  }

  err = sp_canonical_bytes(&dev, readings, count, canonical, sizeof canonical, &len);
  to_hex(canonical, err == SP_OK ? len : 0, hex);
  check_text("canonical bytes", name, hex, canonical_hex);

  err = sp_sign(&dev, readings, count, sig, &sig_len);
  sp_base64(sig, err == SP_OK ? sig_len : 0, sig_text, sizeof sig_text);
  check_text("signature", name, sig_text, sig_b64);

  err = sp_payload(&dev, readings, count, payload, sizeof payload, &len);
  check(err == SP_OK && len == strlen(payload), "sp_payload returns SP_OK and the length", name, sp_strerror(err));
  check_text("payload", name, payload, want_payload);
  check(sp_payload_size(&dev, readings, count) == strlen(want_payload) + 1, "sp_payload_size", name, NULL);

  err = sp_payload(&dev, readings, count, payload, strlen(want_payload), &len);
  check(err == SP_ERR_BUFFER && payload[0] == '\0', "sp_payload refuses a buffer one byte short", name, NULL);

  err = sp_batch_payload(&dev, &batch, 0, payload, sizeof payload, &len, &included, &last_seq);
  check(err == SP_OK && included == count && last_seq == readings[count - 1].seq, "sp_batch_payload takes the whole batch",
        name, sp_strerror(err));
  check_text("sp_batch_payload payload", name, payload, want_payload);
  sp_batch_ack(&batch, last_seq);
  check(sp_batch_count(&batch) == 0, "sp_batch_ack empties the batch", name, NULL);
}

/* ---- numbers: sp_format_number against JavaScript's String(x) ------------------------------------ */

static void check_numbers(int list) {
  int n, total = 0, bad = 0;
  char first_bad[200] = "";
  for (n = nodes[list].child; n >= 0; n = nodes[n].next) {
    uint8_t bytes[8];
    uint64_t bits = 0;
    double value;
    char out[SP_NUMBER_SIZE];
    int i;
    const char *want = member_text(n, "text"), *bits_hex = member_text(n, "bits");
    if (want == NULL || bits_hex == NULL || from_hex(bits_hex, bytes, 8) != 8) {
      bad++;
      continue;
    }
    for (i = 0; i < 8; i++) bits = (bits << 8) | bytes[i];
    memcpy(&value, &bits, sizeof value);
    sp_format_number(value, out);
    total++;
    if (strcmp(out, want) != 0 || strtod(out, NULL) != value + 0.0) {
      if (bad++ == 0) snprintf(first_bad, sizeof first_bad, "bits %s: got %s, want %s", bits_hex, out, want);
    }
  }
  {
    char what[100];
    snprintf(what, sizeof what, "%d numbers print as JavaScript prints them", total);
    check(bad == 0 && total > 0, what, "numbers", first_bad);
  }
}

/* ---- library checks that need no vector --------------------------------------------------------- */

static int failing_save(void *ctx, uint64_t next) {
  (void)ctx;
  (void)next;
  return -1;
}

static void check_library(void) {
  static const uint8_t key[32] = {0};
  static const char *const metrics[] = {"temperature", "humidity", "pressure"};
  static const char *const bad_metrics[][1] = {{"Temp"}, {"1abc"}, {"constructor"}, {"a-b"}, {""}, {"abcdefghijklmnopqrstuvwxyz0123456"}};
  static const char *const bad_ids[] = {"", "Boiler", "-a", "prototype", "a_b", "a123456789012345678901234567890123456789012345678"};
  const char *dup[2] = {"temperature", "temperature"};
  uint64_t next_seq = 5, last_seq;
  sp_seq_store store = sp_seq_store_in_variable(&next_seq), broken = store;
  sp_device dev;
  sp_reading r, buffer[3];
  sp_batch batch;
  char text[600];
  uint8_t digest[32];
  size_t i, len, included;
  const char *lib = "library";

  /* SHA-256 ("abc", FIPS 180-4) and HMAC-SHA256 (RFC 4231 test case 2): the primitives alone. */
  sp_sha256("abc", 3, digest);
  to_hex(digest, 32, text);
  check_text("sha256(\"abc\")", lib, text, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  {
    sp_hmac_sha256_ctx h;
    sp_hmac_sha256_init(&h, (const uint8_t *)"Jefe", 4);
    sp_hmac_sha256_update(&h, "what do ya want ", 16);
    sp_hmac_sha256_update(&h, "for nothing?", 12);
    sp_hmac_sha256_final(&h, digest);
    to_hex(digest, 32, text);
    check_text("hmac-sha256 RFC 4231 case 2", lib, text, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  }
  sp_base64((const uint8_t *)"foob", 4, text, sizeof text);
  check_text("base64 RFC 4648", lib, text, "Zm9vYg==");

  for (i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
    check(sp_device_init(&dev, bad_ids[i], SP_HMAC_SHA256, key, metrics, 3, &store) == SP_ERR_DEVICE_ID,
          "refuses an invalid device id", bad_ids[i], NULL);
  }
  for (i = 0; i < sizeof bad_metrics / sizeof bad_metrics[0]; i++) {
    check(sp_device_init(&dev, "dev-1", SP_HMAC_SHA256, key, bad_metrics[i], 1, &store) == SP_ERR_METRIC_NAME,
          "refuses an invalid metric name", bad_metrics[i][0], NULL);
  }
  check(sp_device_init(&dev, "dev-1", SP_HMAC_SHA256, key, dup, 2, &store) == SP_ERR_METRIC_NAME, "refuses a metric twice", lib, NULL);
  check(sp_device_init(&dev, "a12345678901234567890123456789012345678901234567", SP_HMAC_SHA256, key, metrics, 3, &store) == SP_OK,
        "takes a 48-character id", lib, NULL);
  check(sp_device_init(&dev, "dev-1", SP_HMAC_SHA256, key, metrics, 3, &store) == SP_OK, "sp_device_init", lib, NULL);

  sp_reading_begin(&r, 1767225600000ULL);
  check(sp_take(&dev, &r) == SP_ERR_EMPTY, "refuses a reading without values", lib, NULL);
  {
    volatile double zero = 0.0;
    check(sp_reading_set(&r, &dev, 0, zero / zero) == SP_ERR_VALUE, "refuses NaN", lib, NULL);
    check(sp_reading_set(&r, &dev, 0, 1.0 / zero) == SP_ERR_VALUE, "refuses infinity", lib, NULL);
  }
  check(sp_reading_set(&r, &dev, 3, 1) == SP_ERR_ARGUMENT, "refuses a metric index out of range", lib, NULL);
  check(sp_reading_set_named(&r, &dev, "co2", 1) == SP_ERR_METRIC_NAME, "refuses an undeclared metric", lib, NULL);
  sp_reading_set(&r, &dev, 0, 21.5);
  r.ts_ms = 946684799999ULL;
  check(sp_take(&dev, &r) == SP_ERR_TS, "refuses a ts before 2000 (clock not set)", lib, NULL);
  r.ts_ms = 4102444800001ULL;
  check(sp_take(&dev, &r) == SP_ERR_TS, "refuses a ts after 2100", lib, NULL);
  r.ts_ms = 1767225600000ULL;
  check(next_seq == 5, "a refused reading uses no seq", lib, NULL);
  check(sp_take(&dev, &r) == SP_OK && r.seq == 5 && next_seq == 6, "sp_take uses the stored seq and saves the next", lib, NULL);
  broken.save = failing_save;
  dev.seq_store = broken;
  check(sp_take(&dev, &r) == SP_ERR_STORE && r.seq == 5, "a failing store refuses the reading (no seq reused)", lib, NULL);
  dev.seq_store = store;
  next_seq = SP_SEQ_MAX + 1;
  check(sp_take(&dev, &r) == SP_ERR_SEQ, "refuses a seq past 2^53 - 1", lib, NULL);
  next_seq = 10;

  /* -0 is signed and printed as 0. */
  {
    sp_reading a, b;
    uint8_t sa[64], sb[64];
    size_t la, lb;
    sp_reading_begin(&a, 1767225600000ULL);
    sp_reading_set(&a, &dev, 0, -0.0);
    b = a;
    b.values[0] = 0.0;
    sp_sign(&dev, &a, 1, sa, &la);
    sp_sign(&dev, &b, 1, sb, &lb);
    check(la == lb && memcmp(sa, sb, la) == 0, "-0 is signed as +0", lib, NULL);
    sp_payload(&dev, &a, 1, text, sizeof text, &len);
    check(strstr(text, "\"temperature\":0}") != NULL, "-0 is printed as 0", lib, text);
  }
  /* Messages: seq strictly increasing, and at most 1000 readings. */
  {
    sp_reading two[2];
    sp_reading_begin(&two[0], 1767225600000ULL);
    sp_reading_set(&two[0], &dev, 0, 1);
    two[0].seq = 7;
    two[1] = two[0];
    check(sp_payload(&dev, two, 2, text, sizeof text, &len) == SP_ERR_SEQ, "refuses seq not increasing in a message", lib, NULL);
    check(sp_payload(&dev, two, 0, text, sizeof text, &len) == SP_ERR_EMPTY, "refuses a message without readings", lib, NULL);
    check(sp_payload(&dev, two, 1001, text, sizeof text, &len) == SP_ERR_TOO_MANY, "refuses 1001 readings", lib, NULL);
  }

  /* Batch: fills, drops the oldest when full, sends what fits, acknowledges by seq, resumes. */
  sp_batch_init(&batch, buffer, 3);
  for (i = 0; i < 4; i++) {
    sp_reading_begin(&r, 1767225600000ULL + i * 1000);
    sp_reading_set(&r, &dev, (unsigned)(i % 3), (double)i);
    check(sp_batch_take(&dev, &batch, &r) == SP_OK, "sp_batch_take", lib, NULL);
  }
  check(sp_batch_count(&batch) == 3 && batch.dropped == 1 && buffer[0].seq == 11, "a full batch drops its oldest", lib, NULL);
  check(sp_batch_payload(&dev, &batch, 2, text, sizeof text, &len, &included, &last_seq) == SP_OK && included == 2 &&
            last_seq == 12,
        "sp_batch_payload honours max_readings", lib, text);
  {
    size_t one = sp_payload_size(&dev, buffer, 1);
    check(sp_batch_payload(&dev, &batch, 0, text, one, &len, &included, &last_seq) == SP_OK && included == 1 &&
              len + 1 == one,
          "sp_batch_payload takes what fits the buffer", lib, text);
    check(sp_batch_payload(&dev, &batch, 0, text, one - 1, &len, &included, &last_seq) == SP_ERR_BUFFER,
          "sp_batch_payload refuses a buffer too small for one reading", lib, NULL);
  }
  sp_reading_begin(&r, 1767225700000ULL);
  sp_reading_set(&r, &dev, 1, 50);
  sp_batch_take(&dev, &batch, &r); /* arrives while 11 and 12 are in flight: drops 11 */
  sp_batch_ack(&batch, 12);
  check(sp_batch_count(&batch) == 2 && buffer[0].seq == 13 && buffer[1].seq == 14, "sp_batch_ack removes by seq, not by count", lib, NULL);
  check(sp_batch_resume(&batch, buffer, 3) == 1 && sp_batch_count(&batch) == 2, "sp_batch_resume keeps a batch (deep sleep)", lib, NULL);
  memset(&batch, 0x5a, sizeof batch);
  check(sp_batch_resume(&batch, buffer, 3) == 0 && sp_batch_count(&batch) == 0, "sp_batch_resume starts garbage empty (cold boot)", lib, NULL);

  /* Topics and status. */
  sp_topic_telemetry(&dev, text, SP_TOPIC_SIZE);
  check_text("telemetry topic", lib, text, "sensors/dev-1/telemetry");
  sp_topic_status(&dev, text, SP_TOPIC_SIZE);
  check_text("status topic", lib, text, "sensors/dev-1/status");
  check(sp_topic_status(&dev, text, 10) == SP_ERR_BUFFER, "topic refuses a short buffer", lib, NULL);
  sp_status_payload(&dev, 0, 1767225600000ULL, "will", text, SP_STATUS_PAYLOAD_SIZE, &len);
  check_text("status (Will)", lib, text, "{\"v\":1,\"device\":\"dev-1\",\"state\":\"offline\",\"since\":1767225600000,\"reason\":\"will\"}");
  sp_status_payload(&dev, 1, 1767225600000ULL, NULL, text, SP_STATUS_PAYLOAD_SIZE, &len);
  check_text("status (online)", lib, text, "{\"v\":1,\"device\":\"dev-1\",\"state\":\"online\",\"since\":1767225600000}");
  check(sp_status_payload(&dev, 1, 1767225600000ULL, "bored", text, sizeof text, &len) == SP_ERR_ARGUMENT, "refuses an unknown reason", lib, NULL);
  sp_device_wipe(&dev);
  for (i = 0; i < 32 && dev.key[i] == 0; i++) continue;
  check(i == 32, "sp_device_wipe clears the key", lib, NULL);
}

int main(int argc, char **argv) {
  FILE *f;
  size_t size;
  const char *json;
  int root, vectors, numbers = -1, v, vector_count = 0;
  if (argc != 2) {
    fprintf(stderr, "usage: %s core/PROTOCOL.md | vectors.json\n", argv[0]);
    return 2;
  }
  f = fopen(argv[1], "rb");
  if (f == NULL) {
    perror(argv[1]);
    return 2;
  }
  size = fread(file_buf, 1, MAX_FILE - 1, f);
  fclose(f);
  file_buf[size] = '\0';
  json = file_buf;
  if (strstr(file_buf, "<!-- vectors:begin -->") != NULL) {
    json = strstr(strstr(file_buf, "<!-- vectors:begin -->"), "```json");
    if (json == NULL) {
      fprintf(stderr, "no ```json block after the vectors marker\n");
      return 2;
    }
    json += 7;
  }
  src = json;
  root = parse_value();
  if (root < 0) {
    fprintf(stderr, "cannot read the vectors: %s at offset %ld\n", parse_error, (long)(src - file_buf));
    return 2;
  }
  vectors = nodes[root].type == J_ARR ? root : member(root, "vectors");
  if (nodes[root].type == J_OBJ) numbers = member(root, "numbers");
  if (vectors < 0) {
    fprintf(stderr, "no vectors array\n");
    return 2;
  }
  for (v = nodes[vectors].child; v >= 0; v = nodes[v].next) {
    int before = failures;
    vector_count++;
    check_vector(v);
    printf("# vector %s: %s\n", member_text(v, "name") != NULL ? member_text(v, "name") : "?", failures == before ? "PASS" : "FAIL");
  }
  if (numbers >= 0) check_numbers(numbers);
  check_library();
  printf("1..%d\n# vectors: %d, checks: %d, failed: %d\n", checks, vector_count, checks, failures);
  return failures == 0 && vector_count > 0 ? 0 : 1;
}

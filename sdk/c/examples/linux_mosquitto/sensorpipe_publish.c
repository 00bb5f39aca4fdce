/*
 * A Linux device (or gateway) publishing signed readings with libmosquitto: the C library end to end.
 * test/sdk/c-e2e.test.ts runs it against our broker and ingest.
 *
 *   sensorpipe_publish HOST PORT DEVICE PASSWORD ALG KEY_HEX SEQ_FILE COUNT
 *
 * ALG is hmac-sha256 or ed25519; KEY_HEX the 32-byte signing key (or Ed25519 private key) in hex;
 * SEQ_FILE holds the next sequence number (created if missing), so a second run continues the count as
 * a device does after a reboot. It connects (Will: offline, retained), announces itself online, takes
 * COUNT readings a second apart (timestamps in the past, as if taken offline) into a batch, and sends
 * the batch in messages of up to 4 readings at QoS 1, dropping each from the batch once its PUBACK
 * arrives. Prints "reading SEQ TS temperature=X humidity=Y" per reading and "acked SEQ" per PUBACK.
 * Exit codes: 0 done, 2 usage, 3 connection refused, 4 library error, 5 publish failed.
 *
 * Build: cc -std=c99 -I../../src ../../src/sensorpipe.c ../../src/sp_sha256.c ../../src/sp_ed25519.c sensorpipe_publish.c -lmosquitto -o sensorpipe_publish
 */
#define _POSIX_C_SOURCE 200809L

#include <mosquitto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sensorpipe.h"

static int file_load(void *ctx, uint64_t *next_seq) {
  FILE *f = fopen((const char *)ctx, "r");
  unsigned long long value = 0;
  if (f == NULL) {
    *next_seq = 0; /* never written: start at 0 */
    return 0;
  }
  if (fscanf(f, "%llu", &value) != 1) value = 0;
  fclose(f);
  *next_seq = value;
  return 0;
}

static int file_save(void *ctx, uint64_t next_seq) {
  FILE *f = fopen((const char *)ctx, "w");
  if (f == NULL) return -1;
  fprintf(f, "%llu\n", (unsigned long long)next_seq);
  return fclose(f) == 0 ? 0 : -1; /* a real device: fsync, or NVS; see README */
}

static uint64_t now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return (uint64_t)t.tv_sec * 1000u + (uint64_t)(t.tv_nsec / 1000000);
}

static int connected = -1; /* -1 waiting, 0 refused, 1 connected */
static int acked_mid = -1;

static void on_connect(struct mosquitto *mosq, void *obj, int rc) {
  (void)mosq;
  (void)obj;
  connected = rc == 0 ? 1 : 0;
}

static void on_publish(struct mosquitto *mosq, void *obj, int mid) {
  (void)mosq;
  (void)obj;
  acked_mid = mid;
}

static int wait_for_puback(struct mosquitto *mosq, int mid) {
  int i;
  for (i = 0; i < 200 && acked_mid != mid; i++) {
    if (mosquitto_loop(mosq, 50, 1) != MOSQ_ERR_SUCCESS) return -1;
  }
  return acked_mid == mid ? 0 : -1;
}

int main(int argc, char **argv) {
  static const char *const metrics[] = {"temperature", "humidity"};
  static sp_reading slots[64];
  static char payload[8192];
  char topic[SP_TOPIC_SIZE], status_topic[SP_TOPIC_SIZE], status[SP_STATUS_PAYLOAD_SIZE];
  uint8_t key[32];
  sp_device dev;
  sp_batch batch;
  sp_seq_store store;
  struct mosquitto *mosq;
  size_t len, included, i;
  uint64_t last_seq, connected_at;
  int err, mid, count;

  if (argc != 9) {
    fprintf(stderr, "usage: %s HOST PORT DEVICE PASSWORD ALG KEY_HEX SEQ_FILE COUNT\n", argv[0]);
    return 2;
  }
  if (strlen(argv[6]) != 64) {
    fprintf(stderr, "KEY_HEX must be 32 bytes of hex\n");
    return 2;
  }
  for (i = 0; i < 32; i++) {
    char byte[3] = {argv[6][2 * i], argv[6][2 * i + 1], '\0'};
    key[i] = (uint8_t)strtoul(byte, NULL, 16);
  }
  count = atoi(argv[8]);
  store.load = file_load;
  store.save = file_save;
  store.ctx = argv[7];
  err = sp_device_init(&dev, argv[3], strcmp(argv[5], "ed25519") == 0 ? SP_ED25519 : SP_HMAC_SHA256, key, metrics, 2, &store);
  if (err != SP_OK) {
    fprintf(stderr, "sp_device_init: %s\n", sp_strerror(err));
    return 4;
  }
  sp_topic_telemetry(&dev, topic, sizeof topic);
  sp_topic_status(&dev, status_topic, sizeof status_topic);

  mosquitto_lib_init();
  mosq = mosquitto_new(dev.id, true, NULL); /* client id = device id */
  if (mosq == NULL) return 4;
  mosquitto_connect_callback_set(mosq, on_connect);
  mosquitto_publish_callback_set(mosq, on_publish);
  mosquitto_username_pw_set(mosq, dev.id, argv[4]);
  connected_at = now_ms();
  sp_status_payload(&dev, 0, connected_at, "will", status, sizeof status, &len);
  mosquitto_will_set(mosq, status_topic, (int)len, status, 1, true);
  if (mosquitto_connect(mosq, argv[1], atoi(argv[2]), 30) != MOSQ_ERR_SUCCESS) return 3;
  for (i = 0; i < 100 && connected < 0; i++) mosquitto_loop(mosq, 50, 1);
  if (connected != 1) {
    fprintf(stderr, "connection refused\n");
    return 3;
  }
  sp_status_payload(&dev, 1, connected_at, "connected", status, sizeof status, &len);
  mosquitto_publish(mosq, &mid, status_topic, (int)len, status, 1, true);
  if (wait_for_puback(mosq, mid) != 0) return 5;

  /* Readings taken a second apart, the newest now: as a device that was offline has them. */
  sp_batch_init(&batch, slots, sizeof slots / sizeof slots[0]);
  for (i = 0; i < (size_t)count; i++) {
    sp_reading r;
    char t[SP_NUMBER_SIZE], h[SP_NUMBER_SIZE];
    uint64_t next;
    store.load(store.ctx, &next);
    sp_reading_begin(&r, now_ms() - (uint64_t)(count - 1 - (int)i) * 1000u);
    sp_reading_set(&r, &dev, 0, 18.0 + (double)(next % 40) * 0.25);
    sp_reading_set(&r, &dev, 1, 40.1 + (double)next / 3.0); /* not a short decimal: needs all 17 digits */
    err = sp_batch_take(&dev, &batch, &r);
    if (err != SP_OK) {
      fprintf(stderr, "sp_batch_take: %s\n", sp_strerror(err));
      return 4;
    }
    sp_format_number(r.values[0], t);
    sp_format_number(r.values[1], h);
    printf("reading %llu %llu temperature=%s humidity=%s\n", (unsigned long long)r.seq, (unsigned long long)r.ts_ms, t, h);
  }

  while (sp_batch_count(&batch) > 0) {
    err = sp_batch_payload(&dev, &batch, 4, payload, sizeof payload, &len, &included, &last_seq);
    if (err != SP_OK) {
      fprintf(stderr, "sp_batch_payload: %s\n", sp_strerror(err));
      return 4;
    }
    if (mosquitto_publish(mosq, &mid, topic, (int)len, payload, 1, false) != MOSQ_ERR_SUCCESS) return 5;
    if (wait_for_puback(mosq, mid) != 0) return 5;
    sp_batch_ack(&batch, last_seq); /* delivered: the broker has it */
    printf("acked %llu (%u readings)\n", (unsigned long long)last_seq, (unsigned)included);
  }

  mosquitto_disconnect(mosq);
  mosquitto_loop(mosq, 50, 1);
  mosquitto_destroy(mosq);
  mosquitto_lib_cleanup();
  sp_device_wipe(&dev);
  return 0;
}

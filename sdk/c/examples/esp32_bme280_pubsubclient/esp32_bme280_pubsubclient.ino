/*
 * ESP32 + BME280 → sensorpipe, with PubSubClient. Wakes every minute from deep sleep, reads the BME280,
 * signs nothing yet: the reading goes into a batch kept in RTC memory. Every SEND_EVERY wakes (or when
 * the batch is nearly full) it joins Wi-Fi, connects to the broker with a Last Will, and sends the batch
 * as signed messages, oldest first, with their original timestamps. Then it sleeps again.
 *
 * Libraries: sensorpipe (this one), PubSubClient (Nick O'Leary), Adafruit BME280 + Adafruit Unified
 * Sensor. Board: any ESP32. Fill in the settings below from `sensorpipe devices add <id>`; the
 * signing key it prints is base64: `echo '<key>' | base64 -d | xxd -i` gives the C bytes.
 *
 * Delivery: PubSubClient publishes at QoS 0 only (no PUBACK), so a message lost between the socket and
 * the broker is lost; the protocol asks for QoS 1. For at-least-once use ESP-IDF's esp-mqtt (see
 * README, "QoS 1 with ESP-IDF"), or an Arduino client that publishes at QoS 1 such as 256dpi/arduino-mqtt.
 */
#include <Adafruit_BME280.h>
#include <PubSubClient.h>
#include <Preferences.h>
#include <WiFi.h>
#include <sensorpipe.h>
#include <sys/time.h>
#include <time.h>

// ---- settings -----------------------------------------------------------------------------------
static const char *WIFI_SSID = "my-wifi";
static const char *WIFI_PASSWORD = "my-wifi-password";
static const char *BROKER_HOST = "192.168.1.10"; // the machine running `sensorpipe start`
static const uint16_t BROKER_PORT = 1883;
static const char *DEVICE_ID = "greenhouse-1";
static const char *MQTT_PASSWORD = "from devices add";
static const uint8_t SIGNING_KEY[32] = {0x00 /* the 32 key bytes: echo '<signing key>' | base64 -d | xxd -i */};
static const uint64_t SLEEP_US = 60ULL * 1000000ULL; // one reading a minute
static const int SEND_EVERY = 5;                     // connect every 5th wake

// ---- state that survives deep sleep (RTC slow memory, 8 KiB on the ESP32) ------------------------
#define BATCH_CAPACITY 40                            // 40 x 88 bytes = 3.5 KiB (sizeof(sp_reading), SP_MAX_METRICS 8)
RTC_DATA_ATTR static sp_reading slots[BATCH_CAPACITY];
RTC_DATA_ATTR static sp_batch batch;
RTC_DATA_ATTR static uint64_t rtc_next_seq;          // 0 after a power cut: then NVS decides
RTC_DATA_ATTR static int wakes;

// ---- the seq store: RTC for every reading, NVS (flash) once every 100 ----------------------------
// The protocol lets a device "restart above the last value used": NVS holds a ceiling reserved in
// blocks of 100, written before any seq under it is used. After a power cut the device resumes at the
// ceiling (a gap of up to 100, counted as missing readings) and never reuses a seq; flash sees one
// write per 100 readings instead of one per reading.
static Preferences nvs;
static const uint64_t SEQ_BLOCK = 100;

static int seq_load(void *, uint64_t *next) {
  if (rtc_next_seq == 0) rtc_next_seq = nvs.getULong64("seq_ceiling", 0);
  *next = rtc_next_seq;
  return 0;
}

static int seq_save(void *, uint64_t next) {
  uint64_t ceiling = nvs.getULong64("seq_ceiling", 0);
  if (next > ceiling && nvs.putULong64("seq_ceiling", next + SEQ_BLOCK) != sizeof(uint64_t)) return -1;
  rtc_next_seq = next;
  return 0;
}

static const char *const METRICS[] = {"temperature", "humidity", "pressure"};
enum { TEMPERATURE, HUMIDITY, PRESSURE };

static Adafruit_BME280 bme;
static WiFiClient net;
static PubSubClient mqtt(net);
static sp_device device;

static uint64_t now_ms() {
  struct timeval tv;
  gettimeofday(&tv, nullptr);
  return (uint64_t)tv.tv_sec * 1000ULL + (uint64_t)(tv.tv_usec / 1000);
}

static bool clock_is_set() { return now_ms() >= SP_TS_MIN; }

static void sleep_now() {
  nvs.end();
  esp_sleep_enable_timer_wakeup(SLEEP_US);
  esp_deep_sleep_start();
}

static bool connect_and_send() {
  WiFi.mode(WIFI_STA);
  WiFi.begin(WIFI_SSID, WIFI_PASSWORD);
  for (int i = 0; i < 100 && WiFi.status() != WL_CONNECTED; i++) delay(100);
  if (WiFi.status() != WL_CONNECTED) return false;
  // The ESP32 keeps its clock across deep sleep; set it from NTP now and then (here: every connect).
  configTime(0, 0, "pool.ntp.org");
  for (int i = 0; i < 50 && !clock_is_set(); i++) delay(100);

  char status_topic[SP_TOPIC_SIZE], telemetry_topic[SP_TOPIC_SIZE], will[SP_STATUS_PAYLOAD_SIZE], online[SP_STATUS_PAYLOAD_SIZE];
  size_t len;
  sp_topic_status(&device, status_topic, sizeof status_topic);
  sp_topic_telemetry(&device, telemetry_topic, sizeof telemetry_topic);
  uint64_t since = now_ms();
  sp_status_payload(&device, 0, since, "will", will, sizeof will, &len);
  sp_status_payload(&device, 1, since, "connected", online, sizeof online, &len);

  static char payload[2048];
  mqtt.setServer(BROKER_HOST, BROKER_PORT);
  mqtt.setBufferSize(sizeof payload + 128); // PubSubClient's default (256 bytes) fits one small reading
  // username = client id = device id; Will: offline, QoS 1, retained
  if (!mqtt.connect(DEVICE_ID, DEVICE_ID, MQTT_PASSWORD, status_topic, 1, true, will)) return false;
  mqtt.publish(status_topic, online, true);

  while (sp_batch_count(&batch) > 0) {
    size_t included;
    uint64_t last_seq;
    int err = sp_batch_payload(&device, &batch, 0, payload, sizeof payload, &len, &included, &last_seq);
    if (err != SP_OK) {
      Serial.printf("sp_batch_payload: %s\n", sp_strerror(err));
      break;
    }
    if (!mqtt.publish(telemetry_topic, (const uint8_t *)payload, len, false)) break;
    mqtt.loop();
    sp_batch_ack(&batch, last_seq); // QoS 0: "sent" is as much as PubSubClient can tell
    Serial.printf("sent %u readings up to seq %llu\n", (unsigned)included, (unsigned long long)last_seq);
  }
  mqtt.disconnect(); // a clean disconnect: the broker publishes "offline, clean", not the Will
  net.stop();
  WiFi.disconnect(true);
  return true;
}

void setup() {
  Serial.begin(115200);
  nvs.begin("sensorpipe", false);
  sp_seq_store store = {seq_load, seq_save, nullptr};
  int err = sp_device_init(&device, DEVICE_ID, SP_HMAC_SHA256, SIGNING_KEY, METRICS, 3, &store);
  if (err != SP_OK) {
    Serial.printf("sp_device_init: %s\n", sp_strerror(err));
    sleep_now();
  }
  // After deep sleep the batch is still there; after a power cut it starts empty.
  sp_batch_resume(&batch, slots, BATCH_CAPACITY);
  wakes++;

  if (!clock_is_set()) {
    connect_and_send(); // first boot: nothing to send yet, but this sets the clock
  }
  if (clock_is_set() && bme.begin(0x76)) {
    sp_reading reading;
    sp_reading_begin(&reading, now_ms());
    sp_reading_set(&reading, &device, TEMPERATURE, bme.readTemperature());        // °C
    sp_reading_set(&reading, &device, HUMIDITY, bme.readHumidity());              // %
    sp_reading_set(&reading, &device, PRESSURE, bme.readPressure() / 100.0);      // hPa
    err = sp_batch_take(&device, &batch, &reading);
    if (err != SP_OK) Serial.printf("sp_batch_take: %s\n", sp_strerror(err));
  }
  if (wakes % SEND_EVERY == 0 || sp_batch_count(&batch) >= BATCH_CAPACITY - 5) connect_and_send();
  sleep_now();
}

void loop() {}

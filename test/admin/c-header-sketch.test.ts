/**
 * `sensorpipe devices add --format c-header` drops into the C SDK's example sketch
 * (sdk/c/examples/esp32_bme280_pubsubclient): the sketch's own DEVICE_ID, MQTT_PASSWORD and SIGNING_KEY
 * settings are replaced by `#include "device.h"`, and the sketch still compiles (c++, -Wall -Wextra
 * -Werror). Arduino-ESP32 and the sketch's libraries are not installed here, so the few calls it makes
 * to them are declared by small stubs: this checks the names and types the header must provide, not
 * the board support. (test/admin/e2e.test.ts builds and runs a program with the header and the SDK.)
 */
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../harness/cli.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';

const run = promisify(execFile);
const sdk = fileURLToPath(new URL('../../sdk/c/', import.meta.url));
const SKETCH = join(sdk, 'examples/esp32_bme280_pubsubclient/esp32_bme280_pubsubclient.ino');

/** Just enough of Arduino-ESP32 and of the sketch's libraries for the sketch to compile on the host. */
const STUBS: Record<string, string> = {
  'arduino_stub.h': `#pragma once
#include <stdint.h>
#include <stddef.h>
#include <sys/time.h>
#define RTC_DATA_ATTR
struct SerialStub { void begin(unsigned long) {} int printf(const char *, ...) { return 0; } };
static SerialStub Serial;
inline void delay(unsigned long) {}
inline void configTime(long, int, const char *) {}
inline void esp_sleep_enable_timer_wakeup(uint64_t) {}
inline void esp_deep_sleep_start() {}
`,
  'Adafruit_BME280.h': `#pragma once
class Adafruit_BME280 { public: bool begin(uint8_t) { return true; } float readTemperature() { return 0; } float readHumidity() { return 0; } float readPressure() { return 0; } };
`,
  'PubSubClient.h': `#pragma once
class Client {};
class PubSubClient {
 public:
  explicit PubSubClient(Client &) {}
  void setServer(const char *, uint16_t) {}
  bool setBufferSize(uint16_t) { return true; }
  bool connect(const char *, const char *, const char *, const char *, uint8_t, bool, const char *) { return true; }
  bool publish(const char *, const char *, bool) { return true; }
  bool publish(const char *, const uint8_t *, unsigned int, bool) { return true; }
  bool loop() { return true; }
  void disconnect() {}
};
`,
  'WiFi.h': `#pragma once
#include "PubSubClient.h"
enum { WIFI_STA = 1 };
enum wl_status_t { WL_CONNECTED = 3 };
struct WiFiClass { void mode(int) {} void begin(const char *, const char *) {} wl_status_t status() { return WL_CONNECTED; } void disconnect(bool) {} };
static WiFiClass WiFi;
class WiFiClient : public Client { public: void stop() {} };
`,
  'Preferences.h': `#pragma once
class Preferences { public: bool begin(const char *, bool) { return true; } void end() {} uint64_t getULong64(const char *, uint64_t d) { return d; } size_t putULong64(const char *, uint64_t) { return 8; } };
`,
};

const SETTINGS = [/^static const char \*DEVICE_ID = .*$/m, /^static const char \*MQTT_PASSWORD = .*$/m, /^static const uint8_t SIGNING_KEY\[32\] = .*$/m];

let dir: TempDir;
beforeAll(async () => {
  dir = await tempDir('sensorpipe-c-header-');
  for (const [name, text] of Object.entries(STUBS)) await writeFile(join(dir.path, name), text);
});
afterAll(async () => {
  await dir?.remove();
});

async function compileSketch(sketch: string): Promise<{ ok: boolean; output: string }> {
  const source = join(dir.path, 'sketch.cpp');
  await writeFile(source, sketch);
  try {
    await run('c++', ['-std=gnu++17', '-Wall', '-Wextra', '-Werror', '-fsyntax-only', '-I', dir.path, '-I', join(sdk, 'src'), '-include', join(dir.path, 'arduino_stub.h'), source]);
    return { ok: true, output: '' };
  } catch (err) {
    return { ok: false, output: String((err as { stderr?: string }).stderr ?? err) };
  }
}

describe('the c-header format in the ESP32 example sketch', () => {
  it('the sketch as shipped compiles against the stubs (so the check below is about the header)', async () => {
    const result = await compileSketch(await readFile(SKETCH, 'utf8'));
    expect(result.ok, result.output).toBe(true);
  });

  it('replaces the sketch\'s device settings: the sketch compiles with the header instead', async () => {
    const added = await runCli(['devices', 'add', 'greenhouse-1', '--format', 'c-header', '--registry', join(dir.path, 'registry.json')]);
    expect(added.code, added.stderr).toBe(0);
    await writeFile(join(dir.path, 'device.h'), added.stdout);
    let sketch = await readFile(SKETCH, 'utf8');
    for (const setting of SETTINGS) {
      expect(sketch).toMatch(setting);
      sketch = sketch.replace(setting, '');
    }
    sketch = sketch.replace('#include <sensorpipe.h>\n', '#include <sensorpipe.h>\n#include "device.h"\n');
    const withHeader = await compileSketch(sketch);
    expect(withHeader.ok, withHeader.output).toBe(true);
    // And without the header, the same sketch does not compile: the header is what provides them.
    const without = await compileSketch(sketch.replace('#include "device.h"\n', ''));
    expect(without.ok).toBe(false);
    expect(without.output).toMatch(/DEVICE_ID/);
  });
});

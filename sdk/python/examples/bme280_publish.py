#!/usr/bin/env python3
"""Publish signed BME280 readings (temperature, humidity, pressure) to sensorpipe with paho-mqtt.

A Raspberry Pi with a BME280 on I2C (address 0x76, bus 1) and the `smbus2` and `RPi.bme280` packages
reads the real sensor; anywhere else (or with --fake) a fake sensor makes plausible numbers, so the
example runs on a laptop too. Readings are kept in a file outbox until the broker acknowledges them,
so readings taken while the network or the broker is down are sent later as one signed batch with
their original timestamps, also after a reboot; the seq counter lives in a file as well.

    export SENSORPIPE_DEVICE_ID=greenhouse-1
    export SENSORPIPE_MQTT_PASSWORD=...   # printed once by `sensorpipe devices add greenhouse-1`
    export SENSORPIPE_SIGNING_KEY=...     # idem (base64)
    python3 bme280_publish.py --host 192.168.1.10 --interval 10

Every option can also be given in the environment (see --help). Exit with Ctrl-C or SIGTERM.
"""
import argparse
import json
import math
import os
import random
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # run from a checkout

from sensorpipe_device import Device, HmacSigner, key_from_text  # noqa: E402
from sensorpipe_device.store import FileOutbox, FileSeqStore  # noqa: E402

try:
    import paho.mqtt.client as mqtt
except ImportError:
    sys.exit("this example needs paho-mqtt: apt install python3-paho-mqtt, or pip install paho-mqtt")


def env(name, default=None):
    return os.environ.get("SENSORPIPE_" + name, default)


def parse_args(argv):
    p = argparse.ArgumentParser(description="Publish signed BME280 readings to sensorpipe.")
    p.add_argument("--host", default=env("MQTT_HOST", "127.0.0.1"), help="broker host (SENSORPIPE_MQTT_HOST)")
    p.add_argument("--port", type=int, default=int(env("MQTT_PORT", "1883")), help="broker port (SENSORPIPE_MQTT_PORT)")
    p.add_argument("--ca-file", default=env("MQTT_CA_FILE"), help="use TLS, trusting this CA certificate (SENSORPIPE_MQTT_CA_FILE)")
    p.add_argument("--device", default=env("DEVICE_ID"), help="device id (SENSORPIPE_DEVICE_ID)")
    p.add_argument("--password", default=env("MQTT_PASSWORD"), help="MQTT password (SENSORPIPE_MQTT_PASSWORD)")
    p.add_argument("--key", default=env("SIGNING_KEY"), help="signing key, base64 or hex (SENSORPIPE_SIGNING_KEY)")
    p.add_argument("--alg", default=env("ALG", "hmac-sha256"), choices=["hmac-sha256", "ed25519"], help="SENSORPIPE_ALG")
    p.add_argument("--state-dir", default=env("STATE_DIR", "./sensorpipe-state"), help="seq and outbox files (SENSORPIPE_STATE_DIR)")
    p.add_argument("--interval", type=float, default=float(env("INTERVAL", "10")), help="seconds between readings")
    p.add_argument("--count", type=int, default=0, help="stop after this many readings (0: run until stopped)")
    p.add_argument("--fake", action="store_true", help="use the fake sensor even where a BME280 is present")
    p.add_argument("--offline", action="store_true", help="take readings into the outbox without connecting (as during an outage)")
    p.add_argument("--print-acked", action="store_true", help="print each acknowledged batch's readings as a JSON line")
    args = p.parse_args(argv)
    for name in ("device", "key") + (() if args.offline else ("password",)):
        if not getattr(args, name):
            p.error("--%s (or its SENSORPIPE_ variable) is required" % name)
    return args


class Bme280:
    """The real sensor, through RPi.bme280 (pip install smbus2 RPi.bme280)."""

    def __init__(self, bus=1, address=0x76):
        import bme280
        import smbus2

        self._bme280 = bme280
        self._bus = smbus2.SMBus(bus)
        self._address = address
        self._calibration = bme280.load_calibration_params(self._bus, address)

    def read(self):
        s = self._bme280.sample(self._bus, self._address, self._calibration)
        return {"temperature": round(s.temperature, 2), "humidity": round(s.humidity, 2), "pressure": round(s.pressure, 2)}


class FakeSensor:
    """A day's temperature curve and some noise: plausible numbers without hardware."""

    def read(self):
        hour = (time.time() / 3600) % 24
        temperature = 20 + 4 * math.sin((hour - 9) / 24 * 2 * math.pi) + random.gauss(0, 0.1)
        return {
            "temperature": round(temperature, 2),
            "humidity": round(45 - (temperature - 20) * 1.5 + random.gauss(0, 0.5), 2),
            "pressure": round(1013.25 + random.gauss(0, 0.3), 2),
        }


def open_sensor(fake):
    if not fake:
        try:
            return Bme280()
        except Exception as err:  # no smbus2/bme280 package, no I2C bus, no sensor at the address
            print("no BME280 (%s): using the fake sensor" % err, file=sys.stderr)
    return FakeSensor()


def make_signer(alg, key_text):
    if alg == "ed25519":
        from sensorpipe_device.ed25519 import Ed25519Signer

        return Ed25519Signer(key_from_text(key_text))
    return HmacSigner(key_from_text(key_text))


def now_ms():
    return int(time.time() * 1000)


def connect(args, device):
    """A paho client (1.x or 2.x) connected with the device's credentials and its Will set."""
    if hasattr(mqtt, "CallbackAPIVersion"):  # paho-mqtt 2.x
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device.id, protocol=mqtt.MQTTv311, clean_session=True)
    else:
        client = mqtt.Client(client_id=device.id, protocol=mqtt.MQTTv311, clean_session=True)
    client.username_pw_set(device.id, args.password)  # username = client id = device id (PROTOCOL.md §1)
    if args.ca_file:
        client.tls_set(ca_certs=args.ca_file)
    since = now_ms()
    client.will_set(device.status_topic, device.will_payload(since), qos=1, retain=True)
    state = {"rc": None}

    def on_connect(_client, _userdata, _flags, rc, *_rest):
        state["rc"] = rc
        if rc == 0:
            client.publish(device.status_topic, device.online_payload(now_ms()), qos=1, retain=True)

    client.on_connect = on_connect
    client.reconnect_delay_set(min_delay=1, max_delay=60)
    client.connect_async(args.host, args.port, keepalive=30)
    client.loop_start()  # paho reconnects by itself from here on
    deadline = time.time() + 15
    while state["rc"] is None and time.time() < deadline:
        time.sleep(0.05)
    if state["rc"] != 0:
        print("not connected yet (%s): readings wait in the outbox" % (state["rc"],), file=sys.stderr)
    return client


def drain(client, device, outbox, print_acked):
    """Sends the outbox as batches at QoS 1; a batch leaves the outbox only once its PUBACK is in."""
    while len(outbox) and client.is_connected():
        payload, count = outbox.next_batch(device)
        info = client.publish(device.telemetry_topic, payload, qos=1)
        try:
            info.wait_for_publish(timeout=10)
        except (RuntimeError, ValueError):  # not queued: the connection dropped meanwhile
            return
        if not info.is_published():
            return  # keep them; paho resends in-flight messages after a reconnect, we resend the rest
        acked = outbox.readings[:count]
        outbox.remove(count)
        if print_acked:
            print(json.dumps({"acked": acked}), flush=True)


def main(argv=None):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # systemd's stop: leave through finally
    os.makedirs(args.state_dir, exist_ok=True)
    device = Device(args.device, make_signer(args.alg, args.key), FileSeqStore(os.path.join(args.state_dir, "seq")))
    outbox = FileOutbox(os.path.join(args.state_dir, "outbox.jsonl"))
    sensor = open_sensor(args.fake)
    client = None if args.offline else connect(args, device)
    last_ts = outbox.readings[-1]["ts"] if len(outbox) else 0
    taken = 0
    try:
        while args.count == 0 or taken < args.count:
            # A point's identity is (device, ts): two readings never share a millisecond.
            last_ts = max(now_ms(), last_ts + 1)
            outbox.add(device.take(sensor.read(), last_ts))
            taken += 1
            if client is not None:
                drain(client, device, outbox, args.print_acked)
            if args.count == 0 or taken < args.count:
                time.sleep(args.interval)
        if client is not None:
            deadline = time.time() + 30
            while len(outbox) and time.time() < deadline:
                drain(client, device, outbox, args.print_acked)
                if len(outbox):
                    time.sleep(0.2)
            if len(outbox):
                print("%d readings not acknowledged: they stay in the outbox" % len(outbox), file=sys.stderr)
                return 2
    finally:
        if client is not None:
            client.disconnect()  # a clean disconnect: the broker publishes the offline status itself
            client.loop_stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

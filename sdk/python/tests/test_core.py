"""The core module: validation (table-driven, with the bad inputs), numbers, topics, status, seq,
the outbox's batches. The vectors themselves are in test_vectors.py."""
import ast
import json
import os
import struct
import unittest

from sensorpipe_device import core
from sensorpipe_device.core import (
    Device,
    HmacSigner,
    MemorySeqStore,
    Outbox,
    ProtocolError,
    canonical_bytes,
    check_device_id,
    check_metric_name,
    key_from_text,
    make_reading,
    number_json,
    sign_telemetry,
    status_payload,
    status_topic,
    telemetry_topic,
)

KEY = bytes(range(32))
TS = 1767225600000


class Names(unittest.TestCase):
    def test_device_ids(self):
        for good in ["a", "0", "dev-001", "boiler-7", "a" * 48, "9-", "x-y-z"]:
            with self.subTest(good=good):
                self.assertEqual(check_device_id(good), good)
        for bad in ["", "a" * 49, "-dev", "Dev", "dev_1", "dev 1", "dév", "dev/1", "+", "#", "constructor", "prototype", None, 7]:
            with self.subTest(bad=bad):
                self.assertRaises(ProtocolError, check_device_id, bad)

    def test_metric_names(self):
        for good in ["t", "temperature", "co2", "vibration_rms", "a" * 32]:
            with self.subTest(good=good):
                self.assertEqual(check_metric_name(good), good)
        for bad in ["", "a" * 33, "2t", "_t", "Temp", "temp-c", "temp.c", "__proto__", "constructor", "prototype", "toString", "\uff53ig", None]:
            with self.subTest(bad=bad):
                self.assertRaises(ProtocolError, check_metric_name, bad)

    def test_topics(self):
        self.assertEqual(telemetry_topic("boiler-7"), "sensors/boiler-7/telemetry")
        self.assertEqual(status_topic("boiler-7"), "sensors/boiler-7/status")
        self.assertRaises(ProtocolError, telemetry_topic, "a/+")


class Readings(unittest.TestCase):
    def test_bad_readings(self):
        bad = [
            ("seq negative", -1, TS, {"t": 1}),
            ("seq above 2**53-1", 2 ** 53, TS, {"t": 1}),
            ("seq a float", 1.0, TS, {"t": 1}),
            ("seq a bool", True, TS, {"t": 1}),
            ("ts before 2000", 1, 946684799999, {"t": 1}),
            ("ts after 2100", 1, 4102444800001, {"t": 1}),
            ("ts in seconds", 1, 1767225600, {"t": 1}),
            ("ts a float", 1, float(TS), {"t": 1}),
            ("no metrics", 1, TS, {}),
            ("33 metrics", 1, TS, {"m%d" % i: i for i in range(33)}),
            ("NaN", 1, TS, {"t": float("nan")}),
            ("Infinity", 1, TS, {"t": float("inf")}),
            ("-Infinity", 1, TS, {"t": float("-inf")}),
            ("an integer past binary64", 1, TS, {"t": 2 ** 1024}),
            ("a string", 1, TS, {"t": "21.5"}),
            ("a bool", 1, TS, {"t": True}),
            ("None", 1, TS, {"t": None}),
            ("a bad name", 1, TS, {"Temp": 1}),
        ]
        for why, seq, ts, values in bad:
            with self.subTest(why=why):
                self.assertRaises(ProtocolError, make_reading, seq, ts, values)

    def test_limits_of_a_message(self):
        signer = HmacSigner(KEY)
        one = make_reading(1, TS, {"t": 1})
        self.assertRaises(ProtocolError, sign_telemetry, "dev", [], signer)
        readings = [make_reading(i, TS + i, {"t": i}) for i in range(1001)]
        self.assertRaises(ProtocolError, sign_telemetry, "dev", readings, signer)
        sign_telemetry("dev", readings[:1000], signer)
        self.assertRaises(ProtocolError, sign_telemetry, "dev", [one, one], signer)  # seq not increasing
        self.assertRaises(ProtocolError, sign_telemetry, "dev", [readings[2], readings[1]], signer)

    def test_edges_that_are_allowed(self):
        for seq, ts in [(0, core.MIN_TS_MS), (core.MAX_SEQ, core.MAX_TS_MS)]:
            make_reading(seq, ts, {"t": 0})

    def test_metric_order_does_not_change_the_signature(self):
        signer = HmacSigner(KEY)
        a = sign_telemetry("dev", [make_reading(1, TS, {"b": 2, "a": 1})], signer)
        b = sign_telemetry("dev", [make_reading(1, TS, {"a": 1, "b": 2})], signer)
        self.assertEqual(json.loads(a)["sig"], json.loads(b)["sig"])

    def test_any_change_changes_the_signature(self):
        signer = HmacSigner(KEY)
        base = ("dev", 1, TS, {"t": 21.5})
        variants = [("dew", 1, TS, {"t": 21.5}), ("dev", 2, TS, {"t": 21.5}), ("dev", 1, TS + 1, {"t": 21.5}),
                    ("dev", 1, TS, {"u": 21.5}), ("dev", 1, TS, {"t": 21.500000000000004})]
        sig = json.loads(sign_telemetry(base[0], [make_reading(*base[1:])], signer))["sig"]
        for variant in variants:
            with self.subTest(variant=variant):
                other = json.loads(sign_telemetry(variant[0], [make_reading(*variant[1:])], signer))["sig"]
                self.assertNotEqual(other, sig)


class Numbers(unittest.TestCase):
    def test_json_text_as_javascript_prints_it(self):
        # Expected texts are JSON.stringify's.
        table = [(0, "0"), (-0.0, "0"), (415, "415"), (415.0, "415"), (21.5, "21.5"), (-3.75, "-3.75"),
                 (1e-9, "1e-9"), (1e-7, "1e-7"), (1e-6, "0.000001"), (0.1, "0.1"), (1e16, "10000000000000000"),
                 (1e21, "1e+21"), (1.5e300, "1.5e+300"), (5e-324, "5e-324"), (2 ** 53 - 1, "9007199254740991"),
                 (12.000000000000002, "12.000000000000002"), (123456789.125, "123456789.125")]
        for value, text in table:
            with self.subTest(value=value):
                self.assertEqual(number_json(value), text)

    def test_negative_zero_is_signed_as_positive_zero(self):
        self.assertEqual(core.f64_bytes(-0.0), bytes(8))
        signer = HmacSigner(KEY)
        self.assertEqual(sign_telemetry("dev", [make_reading(1, TS, {"t": -0.0})], signer),
                         sign_telemetry("dev", [make_reading(1, TS, {"t": 0})], signer))

    def test_large_integers_round_like_a_json_parser(self):
        for n in [2 ** 53 + 1, 2 ** 53 + 3, -(2 ** 60) - 1, 10 ** 30, 2 ** 1023 * 3 // 2]:
            with self.subTest(n=n):
                self.assertEqual(core.f64_bytes(n), struct.pack(">d", float(n)))
                self.assertEqual(struct.pack(">d", json.loads(number_json(n))), core.f64_bytes(n))

    def test_exact_decimal_text_reads_back_exactly(self):
        for value in [0.1, -0.3, 1e-9, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 40.1, 2.0 ** 70]:
            with self.subTest(value=value):
                text = core._exact_decimal(struct.pack(">d", value))
                self.assertEqual(float(text), value)
                json.loads(text)  # valid JSON


class Keys(unittest.TestCase):
    def test_key_text(self):
        self.assertEqual(key_from_text(KEY.hex()), KEY)
        self.assertEqual(key_from_text("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="), KEY)
        self.assertRaises(ProtocolError, key_from_text, "AAECAwQF")
        self.assertRaises(ProtocolError, HmacSigner, b"short")

    def test_a_signer_does_not_print_its_key(self):
        self.assertNotIn(KEY.hex(), repr(HmacSigner(KEY)))
        self.assertNotIn("AAECAwQF", repr(HmacSigner(KEY)))


class Status(unittest.TestCase):
    def test_will_and_online(self):
        device = Device("boiler-7", HmacSigner(KEY), MemorySeqStore())
        self.assertEqual(json.loads(device.will_payload(TS)), {"v": 1, "device": "boiler-7", "state": "offline", "since": TS, "reason": "will"})
        self.assertEqual(json.loads(device.online_payload(TS)), {"v": 1, "device": "boiler-7", "state": "online", "since": TS, "reason": "connected"})
        self.assertEqual(status_payload("boiler-7", "offline", TS), '{"v":1,"device":"boiler-7","state":"offline","since":1767225600000}')
        self.assertRaises(ProtocolError, status_payload, "boiler-7", "away", TS)
        self.assertRaises(ProtocolError, status_payload, "boiler-7", "offline", TS, "lunch")
        self.assertRaises(ProtocolError, status_payload, "boiler-7", "offline", 1767225600)


class Seq(unittest.TestCase):
    def test_seq_increases_and_is_saved_before_use(self):
        store = MemorySeqStore()
        device = Device("dev", HmacSigner(KEY), store)
        self.assertEqual([device.take({"t": i}, TS + i)["seq"] for i in range(3)], [1, 2, 3])
        self.assertEqual(store.last, 3)
        again = Device("dev", HmacSigner(KEY), store)  # a reboot with the same store
        self.assertEqual(again.take({"t": 0}, TS)["seq"], 4)

    def test_a_failed_save_hands_out_no_seq(self):
        class Broken(MemorySeqStore):
            def save(self, seq):
                raise OSError("flash full")

        device = Device("dev", HmacSigner(KEY), Broken(7))
        self.assertRaises(OSError, device.take, {"t": 1}, TS)

    def test_a_bad_reading_spends_no_seq(self):
        store = MemorySeqStore()
        device = Device("dev", HmacSigner(KEY), store)
        self.assertRaises(ProtocolError, device.take, {"t": float("nan")}, TS)
        self.assertIsNone(store.last)


class Batches(unittest.TestCase):
    def setUp(self):
        self.device = Device("dev", HmacSigner(KEY), MemorySeqStore())

    def test_offline_readings_go_out_in_one_signed_batch_with_their_timestamps(self):
        outbox = Outbox()
        taken = [self.device.take({"t": i + 0.5}, TS + i * 1000) for i in range(5)]
        for reading in taken:
            outbox.add(reading)
        payload, count = outbox.next_batch(self.device)
        self.assertEqual(count, 5)
        message = json.loads(payload)
        self.assertEqual(message["readings"], taken)
        self.assertEqual(payload, sign_telemetry("dev", taken, self.device.signer))
        outbox.remove(count)
        self.assertIsNone(outbox.next_batch(self.device))

    def test_batches_stay_within_the_count_and_size_limits(self):
        outbox = Outbox(limit=2000)
        values = {"metric_with_a_long_name_%02d" % m: m / 7 for m in range(32)}
        for i in range(1200):
            outbox.add(self.device.take(values, TS + i))
        sent = []
        while len(outbox):
            payload, count = outbox.next_batch(self.device)
            self.assertLessEqual(len(payload.encode()), core.MAX_PAYLOAD_BYTES)
            self.assertLessEqual(count, core.MAX_READINGS_PER_MESSAGE)
            sent.extend(r["seq"] for r in json.loads(payload)["readings"])
            outbox.remove(count)
        self.assertEqual(sent, list(range(1, 1201)))

    def test_a_full_outbox_drops_the_oldest(self):
        outbox = Outbox(limit=3)
        for i in range(5):
            outbox.add(self.device.take({"t": i}, TS + i))
        self.assertEqual([r["seq"] for r in outbox.readings], [3, 4, 5])
        self.assertEqual(outbox.dropped, 2)

    def test_readings_must_arrive_in_seq_order(self):
        outbox = Outbox()
        outbox.add(make_reading(5, TS, {"t": 1}))
        self.assertRaises(ProtocolError, outbox.add, make_reading(5, TS, {"t": 1}))


class MicroPythonSubset(unittest.TestCase):
    """core.py must stay loadable by MicroPython: no f-strings, annotations or typing there."""

    def test_core_uses_no_syntax_micropython_lacks(self):
        path = os.path.join(os.path.dirname(core.__file__), "core.py")
        with open(path) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            self.assertNotIsInstance(node, (ast.JoinedStr, ast.AnnAssign), getattr(node, "lineno", None))
            if isinstance(node, ast.FunctionDef):
                self.assertIsNone(node.returns, node.name)
                self.assertTrue(all(a.annotation is None for a in node.args.args), node.name)
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    self.assertIn(alias.name.split(".")[0], ("struct", "hashlib", "binascii", "hmac", "sys"))

    def test_hmac_without_the_hmac_module(self):
        payload = sign_telemetry("dev", [make_reading(1, TS, {"t": 1})], HmacSigner(KEY))
        saved = core._hmac
        core._hmac = None
        try:
            self.assertEqual(sign_telemetry("dev", [make_reading(1, TS, {"t": 1})], HmacSigner(KEY)), payload)
        finally:
            core._hmac = saved


class Canonical(unittest.TestCase):
    def test_layout(self):
        data = canonical_bytes("ab", [make_reading(1, TS, {"b": 1, "a": -0.0})])
        expected = b"SPv1" + b"\x02ab" + b"\x00\x01" + struct.pack(">QQB", 1, TS, 2) + b"\x01a" + bytes(8) + b"\x01b" + struct.pack(">d", 1.0)
        self.assertEqual(data, expected)


if __name__ == "__main__":
    unittest.main()

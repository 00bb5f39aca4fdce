"""Every test vector of core/PROTOCOL.md, byte for byte: canonical bytes, signature, full payload."""
import base64
import json
import struct
import unittest
from unittest import mock

from sensorpipe_device import core
from sensorpipe_device.core import HmacSigner, canonical_bytes, sign_telemetry
from sensorpipe_device.ed25519 import ED25519_AVAILABLE, Ed25519Signer

from .vectors import load_vectors, vectors_path

VECTORS = load_vectors()


def signer_for(vector):
    key = bytes.fromhex(vector["keyHex"])
    return HmacSigner(key) if vector["alg"] == "hmac-sha256" else Ed25519Signer(key)


def values_of(vector):
    for reading in vector["body"]["readings"]:
        for value in reading["values"].values():
            yield value


class VectorSet(unittest.TestCase):
    def test_the_vectors_are_there(self):
        self.assertGreaterEqual(len(VECTORS), 6, vectors_path())
        self.assertEqual({v["alg"] for v in VECTORS}, {"hmac-sha256", "ed25519"})


class VectorChecks:
    """The checks for one scheme's vectors (a mixin, so that unittest runs it only per scheme)."""

    alg = None

    def vectors(self):
        chosen = [v for v in VECTORS if v["alg"] == self.alg]
        self.assertTrue(chosen, "no %s vectors" % self.alg)
        return chosen

    def test_canonical_bytes(self):
        for vector in self.vectors():
            with self.subTest(vector=vector["name"]):
                body = vector["body"]
                self.assertEqual(canonical_bytes(body["device"], body["readings"]).hex(), vector["canonicalHex"])

    def test_signature(self):
        for vector in self.vectors():
            with self.subTest(vector=vector["name"]):
                body = vector["body"]
                signature = signer_for(vector).sign(canonical_bytes(body["device"], body["readings"]))
                self.assertEqual(base64.b64encode(signature).decode(), vector["signatureBase64"])

    def test_payload_is_byte_identical(self):
        for vector in self.vectors():
            with self.subTest(vector=vector["name"]):
                body = vector["body"]
                self.assertEqual(sign_telemetry(body["device"], body["readings"], signer_for(vector)), vector["payload"])

    def test_the_payload_read_back_gives_the_same_canonical_bytes(self):
        # As a receiver sees it: parse the payload, rebuild the canonical bytes.
        for vector in self.vectors():
            with self.subTest(vector=vector["name"]):
                message = json.loads(vector["payload"])
                self.assertEqual(set(message), {"v", "device", "readings", "sig"})
                self.assertEqual(canonical_bytes(message["device"], message["readings"]).hex(), vector["canonicalHex"])
                self.assertEqual(message["sig"], vector["signatureBase64"])


class HmacVectors(VectorChecks, unittest.TestCase):
    alg = "hmac-sha256"

    def test_the_hashlib_fallback_for_micropython_gives_the_same_tags(self):
        for vector in self.vectors():
            with self.subTest(vector=vector["name"]):
                key = bytes.fromhex(vector["keyHex"])
                tag = core._hmac_sha256_fallback(key, bytes.fromhex(vector["canonicalHex"]))
                self.assertEqual(base64.b64encode(tag).decode(), vector["signatureBase64"])

    def test_the_micropython_number_printing_reads_back_as_the_signed_value(self):
        # Off CPython, floats are printed as their exact decimal value; the payload differs in
        # text from the vector's, but a receiver reads the same numbers, so the signature holds.
        with mock.patch.object(core, "_CPYTHON", False):
            for vector in self.vectors():
                with self.subTest(vector=vector["name"]):
                    body = vector["body"]
                    payload = sign_telemetry(body["device"], body["readings"], signer_for(vector))
                    message = json.loads(payload)
                    self.assertEqual(canonical_bytes(message["device"], message["readings"]).hex(), vector["canonicalHex"])
                    self.assertEqual(message["sig"], vector["signatureBase64"])
                    for value in values_of(vector):
                        text = core.number_json(value)
                        self.assertEqual(struct.pack(">d", float(text)), core.f64_bytes(value), text)


@unittest.skipUnless(ED25519_AVAILABLE, "Ed25519 unavailable: the 'cryptography' package is not installed")
class Ed25519Vectors(VectorChecks, unittest.TestCase):
    alg = "ed25519"

    def test_public_key(self):
        for vector in self.vectors():
            with self.subTest(vector=vector["name"]):
                self.assertEqual(Ed25519Signer(bytes.fromhex(vector["keyHex"])).public_key_hex(), vector["publicKeyHex"])


if __name__ == "__main__":
    unittest.main()

# Ed25519 signing (PROTOCOL.md §4, pure Ed25519 per RFC 8032) through the `cryptography` package,
# which is optional: `pip install cryptography`, or Debian's python3-cryptography. Without it,
# ED25519_AVAILABLE is False and Ed25519Signer raises Ed25519Unavailable saying so; HMAC works anyway.
# (Not for MicroPython: use hmac-sha256 there.)
import binascii

try:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    ED25519_AVAILABLE = True
    _WHY_UNAVAILABLE = None
except ImportError as err:  # not installed, or too old to have Ed25519 (added in cryptography 2.6)
    ED25519_AVAILABLE = False
    _WHY_UNAVAILABLE = str(err)


class Ed25519Unavailable(ImportError):
    pass


class Ed25519Signer:
    """ed25519: the device's 32-byte private key (seed); the server keeps only the public key."""

    alg = "ed25519"

    def __init__(self, seed):
        if not ED25519_AVAILABLE:
            raise Ed25519Unavailable(
                "Ed25519 needs the 'cryptography' package (pip install cryptography, or apt install "
                "python3-cryptography): %s" % _WHY_UNAVAILABLE
            )
        if isinstance(seed, str):
            from .core import key_from_text

            seed = key_from_text(seed)
        if len(seed) != 32:
            raise ValueError("an Ed25519 private key (seed) is 32 bytes, got %d" % len(seed))
        self._key = Ed25519PrivateKey.from_private_bytes(bytes(seed))

    def sign(self, data):
        return self._key.sign(data)

    def public_key(self):
        """The 32-byte public key the server keeps (what `sensorpipe devices add --alg ed25519` registers)."""
        return self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def public_key_hex(self):
        return binascii.hexlify(self.public_key()).decode()

    def __repr__(self):
        return "Ed25519Signer(<key redacted>)"

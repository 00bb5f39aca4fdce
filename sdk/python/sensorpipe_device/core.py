# sensorpipe device protocol v1 (core/PROTOCOL.md): canonical bytes, HMAC-SHA256 signing, the JSON
# payload, topics, the status (Will) payload, seq bookkeeping and an offline outbox for batches.
#
# This module is the part that also runs on MicroPython: standard modules only (struct, hashlib,
# binascii, and hmac where it exists), no f-strings, no annotations, no typing, no re. The payload
# JSON is written by hand so that it is the same on every Python: MicroPython's json module cannot
# choose separators, and its float printing does not always read back as the same binary64.
import struct
import hashlib
import binascii

try:
    import hmac as _hmac
except ImportError:  # MicroPython without micropython-lib's hmac: HMAC from hashlib below
    _hmac = None

try:
    import sys as _sys
    _CPYTHON = _sys.implementation.name == "cpython"
except (ImportError, AttributeError):
    _CPYTHON = False

PROTOCOL_VERSION = 1
MAGIC = b"SPv1"

MAX_PAYLOAD_BYTES = 262144
DEVICE_ID_MAX_LENGTH = 48
METRIC_NAME_MAX_LENGTH = 32
MAX_METRICS_PER_READING = 32
MAX_READINGS_PER_MESSAGE = 1000
MAX_SEQ = 9007199254740991  # 2**53 - 1
MIN_TS_MS = 946684800000  # 2000-01-01
MAX_TS_MS = 4102444800000  # 2100-01-01

# Names of JavaScript's Object.prototype plus "prototype" (PROTOCOL.md §3, "reserved names"); the
# slug patterns exclude all but "constructor" and "prototype", listed whole so the rule stands alone.
RESERVED_NAMES = (
    "constructor", "prototype", "__proto__", "__defineGetter__", "__defineSetter__",
    "__lookupGetter__", "__lookupSetter__", "hasOwnProperty", "isPrototypeOf",
    "propertyIsEnumerable", "toString", "valueOf", "toLocaleString",
)

STATUS_REASONS = ("connected", "clean", "will", "keepalive", "socket", "revoked", "takeover", "shutdown")

_LOWER = "abcdefghijklmnopqrstuvwxyz"
_DIGITS = "0123456789"


class ProtocolError(ValueError):
    """A value the protocol does not allow (the receiver would refuse it as PAYLOAD_INVALID)."""


# ---------------------------------------------------------------------------------------------
# Names, topics, status
# ---------------------------------------------------------------------------------------------

def check_device_id(device_id):
    """Raises ProtocolError unless device_id matches ^[a-z0-9][a-z0-9-]{0,47}$ and is not reserved."""
    if not isinstance(device_id, str) or not 1 <= len(device_id) <= DEVICE_ID_MAX_LENGTH:
        raise ProtocolError("device id must be a string of 1 to 48 characters: %r" % (device_id,))
    for i in range(len(device_id)):
        c = device_id[i]
        if not (c in _LOWER or c in _DIGITS or (c == "-" and i > 0)):
            raise ProtocolError("device id must be a lowercase slug (a-z, 0-9, '-'): %r" % (device_id,))
    if device_id in RESERVED_NAMES:
        raise ProtocolError("device id is reserved: %r" % (device_id,))
    return device_id


def check_metric_name(name):
    """Raises ProtocolError unless name matches ^[a-z][a-z0-9_]{0,31}$ and is not reserved."""
    if not isinstance(name, str) or not 1 <= len(name) <= METRIC_NAME_MAX_LENGTH:
        raise ProtocolError("metric name must be a string of 1 to 32 characters: %r" % (name,))
    for i in range(len(name)):
        c = name[i]
        if not (c in _LOWER or (i > 0 and (c in _DIGITS or c == "_"))):
            raise ProtocolError("metric name must be lowercase (a-z, 0-9, '_', starting with a letter): %r" % (name,))
    if name in RESERVED_NAMES:
        raise ProtocolError("metric name is reserved: %r" % (name,))
    return name


def telemetry_topic(device_id):
    return "sensors/" + check_device_id(device_id) + "/telemetry"


def status_topic(device_id):
    return "sensors/" + check_device_id(device_id) + "/status"


def _check_ts(ts):
    if not _is_int(ts) or not MIN_TS_MS <= ts <= MAX_TS_MS:
        raise ProtocolError("ts must be integer milliseconds since the Unix epoch, 2000..2100: %r" % (ts,))
    return ts


def status_payload(device_id, state, since, reason=None):
    """The status message (PROTOCOL.md §3.2), e.g. for the Last Will:
    status_payload("boiler-7", "offline", connected_at_ms, "will")."""
    check_device_id(device_id)
    if state not in ("online", "offline"):
        raise ProtocolError("state must be 'online' or 'offline': %r" % (state,))
    _check_ts(since)
    out = '{"v":1,"device":"' + device_id + '","state":"' + state + '","since":' + str(since)
    if reason is not None:
        if reason not in STATUS_REASONS:
            raise ProtocolError("unknown status reason: %r" % (reason,))
        out += ',"reason":"' + reason + '"'
    return out + "}"


# ---------------------------------------------------------------------------------------------
# Numbers: the binary64 that is signed, and JSON text that denotes exactly that binary64
# ---------------------------------------------------------------------------------------------

def _is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def _bit_length(n):
    # int.bit_length is missing on some MicroPython ports.
    bits = 0
    while n:
        n >>= 1
        bits += 1
    return bits


def _int_to_f64(n):
    """The binary64 nearest to the integer n (ties to even), as 8 big-endian bytes, computed with
    integers so that it is right also where floats are single precision (many MicroPython ports)."""
    if n == 0:
        return b"\x00" * 8
    sign = 0
    if n < 0:
        sign = 1
        n = -n
    length = _bit_length(n)
    if length <= 53:
        m = n << (53 - length)
    else:
        shift = length - 53
        m = n >> shift
        rest = n & ((1 << shift) - 1)
        half = 1 << (shift - 1)
        if rest > half or (rest == half and (m & 1)):
            m += 1
            if m == 1 << 53:
                m >>= 1
                length += 1
    exponent = length - 1 + 1023
    if exponent > 2046:
        raise ProtocolError("value out of the range of a binary64: %r" % (n,))
    return struct.pack(">Q", (sign << 63) | (exponent << 52) | (m & ((1 << 52) - 1)))


def f64_bytes(value):
    """The 8 bytes (IEEE-754 binary64, big-endian) signed for a metric value. -0 is signed as +0;
    NaN, infinities and non-numbers raise ProtocolError."""
    if _is_int(value):
        return _int_to_f64(value)
    if not isinstance(value, float):
        raise ProtocolError("a value must be an int or a float: %r" % (value,))
    b = struct.pack(">d", value)
    if (b[0] & 0x7F) == 0x7F and (b[1] & 0xF0) == 0xF0:
        raise ProtocolError("a value must be finite: %r" % (value,))
    if b == b"\x80\x00\x00\x00\x00\x00\x00\x00":
        return b"\x00" * 8
    return b


def _exact_decimal(b):
    """JSON text for the exact value of the binary64 in b: digits, then 'e-k' where needed. Every
    finite binary64 is a finite decimal, so this reads back as exactly b on any correct parser."""
    bits = struct.unpack(">Q", b)[0]
    negative = bits >> 63
    exponent = (bits >> 52) & 0x7FF
    fraction = bits & ((1 << 52) - 1)
    if exponent == 0:
        m, x = fraction, -1074
    else:
        m, x = fraction | (1 << 52), exponent - 1075
    if m == 0:
        return "0"
    if x >= 0:
        text = str(m << x)
    else:
        k = -x
        d = m * (5 ** k)  # m * 2**-k == m * 5**k / 10**k
        while k > 0 and d % 10 == 0:
            d //= 10
            k -= 1
        text = str(d) if k == 0 else str(d) + "e-" + str(k)
    return ("-" if negative else "") + text


def _js_number(value):
    """Shortest round-trip text of a float, laid out as JavaScript's JSON.stringify prints it (so the
    payload is byte-identical to the reference implementation's). CPython's repr gives the shortest
    digits that read back as the same binary64, as JavaScript does; only the layout differs."""
    text = repr(value)
    negative = text[0] == "-"
    if negative:
        text = text[1:]
    e = text.find("e")
    exp = 0
    if e >= 0:
        exp = int(text[e + 1:])
        text = text[:e]
    dot = text.find(".")
    if dot >= 0:
        whole, frac = text[:dot], text[dot + 1:]
    else:
        whole, frac = text, ""
    all_digits = whole + frac
    stripped = all_digits.lstrip("0")
    n = len(whole) + exp - (len(all_digits) - len(stripped))  # the decimal point is after n digits
    digits = stripped.rstrip("0")
    if not digits:
        return "0"
    k = len(digits)
    if k <= n <= 21:
        out = digits + "0" * (n - k)
    elif 0 < n <= 21:
        out = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        out = "0." + "0" * (-n) + digits
    else:
        out = digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + ("+" if n - 1 >= 0 else "-") + str(abs(n - 1))
    return ("-" if negative else "") + out


def number_json(value):
    """JSON text for a metric value that denotes exactly the binary64 f64_bytes(value) signs."""
    b = f64_bytes(value)
    if _is_int(value) and -MAX_SEQ <= value <= MAX_SEQ:
        return str(value)  # exactly representable: the integer itself
    if b == b"\x00" * 8:
        return "0"
    if _CPYTHON:
        return _js_number(struct.unpack(">d", b)[0])
    return _exact_decimal(b)


# ---------------------------------------------------------------------------------------------
# Readings, canonical bytes, payload
# ---------------------------------------------------------------------------------------------

def make_reading(seq, ts, values):
    """A reading as the payload carries it: {"seq": int, "ts": int ms, "values": {name: number}}."""
    reading = {"seq": seq, "ts": ts, "values": values}
    check_reading(reading)
    return reading


def check_reading(reading):
    seq = reading["seq"]
    if not _is_int(seq) or not 0 <= seq <= MAX_SEQ:
        raise ProtocolError("seq must be an integer, 0..2**53-1: %r" % (seq,))
    _check_ts(reading["ts"])
    values = reading["values"]
    if not isinstance(values, dict) or not 1 <= len(values) <= MAX_METRICS_PER_READING:
        raise ProtocolError("a reading has 1 to 32 metrics")
    for name in values:
        check_metric_name(name)
        f64_bytes(values[name])
    return reading


def _check_readings(readings):
    if not 1 <= len(readings) <= MAX_READINGS_PER_MESSAGE:
        raise ProtocolError("a message holds 1 to 1000 readings, not %d" % len(readings))
    previous = -1
    for reading in readings:
        check_reading(reading)
        if reading["seq"] <= previous:
            raise ProtocolError("seq must be strictly increasing within a message")
        previous = reading["seq"]


def canonical_bytes(device_id, readings):
    """The bytes a device signs (PROTOCOL.md §4)."""
    check_device_id(device_id)
    _check_readings(readings)
    parts = [MAGIC, bytes([len(device_id)]), device_id.encode(), struct.pack(">H", len(readings))]
    for reading in readings:
        values = reading["values"]
        names = sorted(values)  # ASCII names: code point order is byte order
        parts.append(struct.pack(">QQB", reading["seq"], reading["ts"], len(names)))
        for name in names:
            parts.append(bytes([len(name)]))
            parts.append(name.encode())
            parts.append(f64_bytes(values[name]))
    return b"".join(parts)


def _reading_json(reading):
    values = reading["values"]
    members = []
    for name in values:
        members.append('"' + name + '":' + number_json(values[name]))
    return '{"seq":' + str(reading["seq"]) + ',"ts":' + str(reading["ts"]) + ',"values":{' + ",".join(members) + "}}"


def payload_json(device_id, readings, signature):
    """The complete MQTT payload (PROTOCOL.md §3.1) with the given signature bytes."""
    sig = binascii.b2a_base64(signature).decode().strip()
    body = ",".join([_reading_json(r) for r in readings])
    return '{"v":1,"device":"' + device_id + '","readings":[' + body + '],"sig":"' + sig + '"}'


def sign_telemetry(device_id, readings, signer):
    """Canonical bytes → signature → the complete payload (a str; ASCII, so also its UTF-8 bytes)."""
    return payload_json(device_id, readings, signer.sign(canonical_bytes(device_id, readings)))


# ---------------------------------------------------------------------------------------------
# Signing keys
# ---------------------------------------------------------------------------------------------

def _hmac_sha256(key, data):
    if _hmac is not None and hasattr(_hmac, "new"):
        return _hmac.new(key, data, hashlib.sha256).digest()
    return _hmac_sha256_fallback(key, data)


def _hmac_sha256_fallback(key, data):
    # RFC 2104 with SHA-256 (block size 64), for MicroPython builds that have hashlib but no hmac.
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key + b"\x00" * (64 - len(key))
    inner = hashlib.sha256(bytes([b ^ 0x36 for b in key]) + data).digest()
    return hashlib.sha256(bytes([b ^ 0x5C for b in key]) + inner).digest()


def key_from_text(text):
    """A 32-byte key from the text `sensorpipe devices add` prints: base64 (44 characters) or hex (64)."""
    text = text.strip()
    if len(text) == 64:
        key = binascii.unhexlify(text)
    else:
        key = binascii.a2b_base64(text)
    if len(key) != 32:
        raise ProtocolError("a signing key is 32 bytes (base64 or hex), got %d" % len(key))
    return key


class HmacSigner:
    """hmac-sha256: the device's 32-byte signing key, shared with the server."""

    alg = "hmac-sha256"

    def __init__(self, key):
        if isinstance(key, str):
            key = key_from_text(key)
        if len(key) != 32:
            raise ProtocolError("an hmac-sha256 signing key is 32 bytes, got %d" % len(key))
        self._key = bytes(key)

    def sign(self, data):
        return _hmac_sha256(self._key, data)

    def __repr__(self):
        return "HmacSigner(<key redacted>)"  # keys never end up in logs


# ---------------------------------------------------------------------------------------------
# Sequence numbers and the offline outbox
# ---------------------------------------------------------------------------------------------

class MemorySeqStore:
    """A seq store that forgets on restart: for tests, or as the shape of your own (NVS, RTC memory,
    a file). A store has load() -> last seq used or None, and save(seq), durable when it returns."""

    def __init__(self, last=None):
        self.last = last

    def load(self):
        return self.last

    def save(self, seq):
        self.last = seq


class Device:
    """One device: its id, its signer, and its seq counter kept in a caller-provided store.

        device = Device("boiler-7", HmacSigner(key), FileSeqStore("/var/lib/sensorpipe/seq"))
        reading = device.take({"temperature": 21.5}, ts=now_ms)
        payload = device.payload([reading])
    """

    def __init__(self, device_id, signer, seq_store, first_seq=1):
        self.id = check_device_id(device_id)
        self.signer = signer
        self.seq_store = seq_store
        self.first_seq = first_seq

    def next_seq(self):
        """The next seq, saved before it is handed out: a reboot never reuses one (PROTOCOL.md §3.1)."""
        last = self.seq_store.load()
        seq = self.first_seq if last is None else last + 1
        if seq > MAX_SEQ:
            raise ProtocolError("seq exhausted")
        self.seq_store.save(seq)
        return seq

    def take(self, values, ts):
        """A new reading of `values` taken at `ts` (integer ms since the Unix epoch), with the next seq."""
        reading = {"seq": 0, "ts": ts, "values": values}
        check_reading(reading)  # before a seq is spent on it
        reading["seq"] = self.next_seq()
        return reading

    def payload(self, readings):
        return sign_telemetry(self.id, readings, self.signer)

    @property
    def telemetry_topic(self):
        return telemetry_topic(self.id)

    @property
    def status_topic(self):
        return status_topic(self.id)

    def will_payload(self, since):
        """The Last Will (offline, retained, QoS 1) to register at connect time."""
        return status_payload(self.id, "offline", since, "will")

    def online_payload(self, since):
        return status_payload(self.id, "online", since, "connected")


class Outbox:
    """Readings waiting for their PUBACK, oldest first: a device keeps taking readings while offline
    and sends them as batches with their original timestamps when it is back (PROTOCOL.md §3.1).

        outbox.add(device.take(values, ts))
        batch = outbox.next_batch(device)          # (payload, count) or None
        ... publish batch[0] at QoS 1, wait for the PUBACK ...
        outbox.remove(batch[1])

    Holds at most `limit` readings; past that the oldest are dropped (counted in `dropped`, and seen by
    the server as seq gaps, i.e. missing readings)."""

    def __init__(self, limit=1000):
        self.limit = limit
        self.readings = []
        self.dropped = 0

    def __len__(self):
        return len(self.readings)

    def add(self, reading):
        check_reading(reading)
        if self.readings and reading["seq"] <= self.readings[-1]["seq"]:
            raise ProtocolError("readings must be added in seq order")
        self.readings.append(reading)
        overflow = len(self.readings) - self.limit
        if overflow > 0:
            self.readings = self.readings[overflow:]
            self.dropped += overflow
            self._persist_all()
        else:
            self._persist_append(reading)

    def next_batch(self, device, max_readings=MAX_READINGS_PER_MESSAGE, max_bytes=MAX_PAYLOAD_BYTES):
        """The signed payload of the oldest readings that fit one message, and how many it holds."""
        count = min(len(self.readings), max_readings, MAX_READINGS_PER_MESSAGE)
        while count > 0:
            payload = device.payload(self.readings[:count])
            if len(payload) <= max_bytes:  # ASCII: characters are bytes
                return payload, count
            count = min(count - 1, count * max_bytes // len(payload))  # readings are about equal in size
        return None

    def remove(self, count):
        """Forgets the oldest `count` readings, once their message is acknowledged."""
        self.readings = self.readings[count:]
        self._persist_all()

    # Hooks for a persistent outbox (sensorpipe_device.store.FileOutbox); durable when they return.
    def _persist_append(self, reading):
        pass

    def _persist_all(self):
        pass

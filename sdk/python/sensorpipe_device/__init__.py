"""sensorpipe device library for Python: signed readings for sensorpipe (core/PROTOCOL.md, v1).

The names below come from .core, which also runs on MicroPython. File-backed state is in .store,
Ed25519 (optional, needs the `cryptography` package) in .ed25519.
"""
from .core import (  # noqa: F401
    MAX_PAYLOAD_BYTES,
    MAX_READINGS_PER_MESSAGE,
    PROTOCOL_VERSION,
    Device,
    HmacSigner,
    MemorySeqStore,
    Outbox,
    ProtocolError,
    canonical_bytes,
    check_device_id,
    check_metric_name,
    f64_bytes,
    key_from_text,
    make_reading,
    number_json,
    payload_json,
    sign_telemetry,
    status_payload,
    status_topic,
    telemetry_topic,
)

__version__ = "0.1.0"

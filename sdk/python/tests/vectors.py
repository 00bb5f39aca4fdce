"""The protocol's test vectors, read at test time from their one source of truth: the JSON block of
core/PROTOCOL.md, which test/core/signature.test.ts holds equal to core/vectors.ts's generateVectors().
SENSORPIPE_VECTORS may name another file (that JSON array, or a markdown document with the block):
test/sdk/python.test.ts uses it to check that a wrong vector makes these tests fail."""
import json
import os

BEGIN = "<!-- vectors:begin -->"
END = "<!-- vectors:end -->"
PROTOCOL_MD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "core", "PROTOCOL.md")


def vectors_path():
    return os.environ.get("SENSORPIPE_VECTORS") or PROTOCOL_MD


def parse_vectors(text):
    if text.lstrip().startswith("["):
        return json.loads(text)
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError("no vectors block (%s … %s)" % (BEGIN, END))
    block = text[start + len(BEGIN):end]
    open_fence = block.index("```json\n") + len("```json\n")
    close_fence = block.index("\n```", open_fence)
    return json.loads(block[open_fence:close_fence])


def load_vectors():
    path = vectors_path()
    if not os.path.exists(path):
        raise FileNotFoundError(
            "test vectors not found at %s: run the tests inside the sensorpipe repository, or set "
            "SENSORPIPE_VECTORS to core/PROTOCOL.md" % path
        )
    with open(path, encoding="utf-8") as f:
        return parse_vectors(f.read())

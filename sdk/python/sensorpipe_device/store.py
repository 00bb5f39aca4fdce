# File-backed state that survives a reboot or a power cut: the seq counter and the outbox of readings
# not yet acknowledged. Every write goes to a temporary file that is fsynced and then renamed over the
# old one (and the directory fsynced), so a crash leaves either the old content or the new, never half.
import json
import os

from .core import Outbox, ProtocolError, check_reading


def _fsync_dir(path):
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd = os.open(directory, os.O_RDONLY)
    except (OSError, AttributeError):  # not on every platform (Windows, MicroPython)
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomically(path, text):
    """Replaces the file at `path` with `text`, durably: temp file, fsync, rename, fsync the folder."""
    temp = path + ".tmp"
    with open(temp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)
    _fsync_dir(path)


class FileSeqStore:
    """The last seq used, as decimal text in one file. A missing file means a new device (its first
    seq is 1); a file that cannot be read raises rather than restart at 1, which the server would
    take for replays of old readings."""

    def __init__(self, path):
        self.path = path

    def load(self):
        try:
            with open(self.path) as f:
                text = f.read().strip()
        except FileNotFoundError:
            return None
        if not text.isdigit():
            raise ProtocolError("seq file %s is corrupt (%r): restore it, or write a seq above every one used" % (self.path, text[:40]))
        return int(text)

    def save(self, seq):
        write_atomically(self.path, str(seq) + "\n")


class FileOutbox(Outbox):
    """An Outbox kept in a file (one JSON reading per line), so readings taken while offline survive a
    reboot too. Floats are written as Python's repr, which reads back as the same binary64."""

    def __init__(self, path, limit=100000):
        Outbox.__init__(self, limit)
        self.path = path
        try:
            with open(path) as f:
                lines = [line for line in f.read().splitlines() if line.strip()]
        except FileNotFoundError:
            lines = []
        for i, line in enumerate(lines):
            try:
                reading = json.loads(line)
            except ValueError:
                # Only the last line can be torn (a power cut during an append, before add returned:
                # that reading was never sent). Anything else is damage we must not paper over.
                if i == len(lines) - 1:
                    break
                raise
            self.readings.append(check_reading(reading))

    def _persist_append(self, reading):
        with open(self.path, "a") as f:
            f.write(_line(reading))
            f.flush()
            os.fsync(f.fileno())

    def _persist_all(self):
        write_atomically(self.path, "".join(_line(r) for r in self.readings))


def _line(reading):
    return json.dumps(reading, separators=(",", ":")) + "\n"

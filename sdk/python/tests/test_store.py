"""File-backed seq and outbox: they survive a restart (a new object on the same file)."""
import os
import shutil
import tempfile
import unittest

from sensorpipe_device.core import Device, HmacSigner, ProtocolError
from sensorpipe_device.store import FileOutbox, FileSeqStore

TS = 1767225600000


class FileState(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="sensorpipe-py-")
        self.seq_path = os.path.join(self.dir, "seq")
        self.outbox_path = os.path.join(self.dir, "outbox.jsonl")

    def tearDown(self):
        shutil.rmtree(self.dir)

    def device(self):
        return Device("dev", HmacSigner(bytes(32)), FileSeqStore(self.seq_path))

    def test_seq_survives_a_restart(self):
        self.assertEqual([self.device().take({"t": 1}, TS)["seq"] for _ in range(3)], [1, 2, 3])
        self.assertEqual(self.device().take({"t": 1}, TS)["seq"], 4)
        with open(self.seq_path) as f:
            self.assertEqual(f.read(), "4\n")
        self.assertFalse(os.path.exists(self.seq_path + ".tmp"))

    def test_a_corrupt_seq_file_stops_the_device_instead_of_restarting_at_1(self):
        with open(self.seq_path, "w") as f:
            f.write("garbage")
        self.assertRaises(ProtocolError, self.device().take, {"t": 1}, TS)

    def test_outbox_survives_a_restart_and_forgets_what_was_acknowledged(self):
        device = self.device()
        outbox = FileOutbox(self.outbox_path)
        taken = [device.take({"t": i / 3, "n": i}, TS + i) for i in range(4)]
        for reading in taken:
            outbox.add(reading)
        again = FileOutbox(self.outbox_path)
        self.assertEqual(again.readings, taken)  # floats read back exactly
        payload, count = again.next_batch(device)
        self.assertEqual(payload, device.payload(taken))
        again.remove(2)
        self.assertEqual(FileOutbox(self.outbox_path).readings, taken[2:])

    def test_a_torn_last_line_is_dropped_and_a_torn_middle_line_is_an_error(self):
        outbox = FileOutbox(self.outbox_path)
        outbox.add({"seq": 1, "ts": TS, "values": {"t": 1}})
        with open(self.outbox_path, "a") as f:
            f.write('{"seq":2,"ts":')
        self.assertEqual([r["seq"] for r in FileOutbox(self.outbox_path).readings], [1])
        with open(self.outbox_path, "a") as f:
            f.write('\n{"seq":3,"ts":1767225600000,"values":{"t":1}}\n')
        self.assertRaises(ValueError, FileOutbox, self.outbox_path)

    def test_the_limit_drops_the_oldest_on_disk_too(self):
        outbox = FileOutbox(self.outbox_path, limit=2)
        for seq in range(1, 5):
            outbox.add({"seq": seq, "ts": TS, "values": {"t": seq}})
        self.assertEqual([r["seq"] for r in FileOutbox(self.outbox_path).readings], [3, 4])


if __name__ == "__main__":
    unittest.main()

"""The W&B run log read without the W&B service: framing across 32 KiB blocks, a torn
tail, a file that is not a log."""

from __future__ import annotations

import json
import struct
import zlib

import pytest

pb = pytest.importorskip("wandb.proto.wandb_internal_pb2")

from reproduce.wandb_files import WandbFileError, find_run_folder, metric_points, read_run_folder  # noqa: E402

BLOCK = 32768


def frames(payloads: list[bytes]) -> bytes:
    """A log as W&B writes it: header, then records framed (crc, length, type) in blocks."""
    out = bytearray(b":W&B" + struct.pack("<HB", 0xBEE1, 0))
    for payload in payloads:
        rest, first = payload, True
        while True:
            left = BLOCK - len(out) % BLOCK
            if left < 7:
                out += b"\0" * left
                left = BLOCK
            room = left - 7
            chunk, rest = rest[:room], rest[room:]
            kind = (1 if first else 4) if not rest else (2 if first else 3)
            out += struct.pack("<IHB", zlib.crc32(bytes([kind]) + chunk), len(chunk), kind) + chunk
            first = False
            if not rest:
                break
    return bytes(out)


def history(step: int, **values) -> bytes:
    record = pb.Record()
    item = record.history.item.add()
    item.nested_key.append("_step")
    item.value_json = json.dumps(step)
    for key, value in values.items():
        item = record.history.item.add()
        item.nested_key.append(key)
        item.value_json = json.dumps(value)
    return record.SerializeToString()


def run_record(run_id: str) -> bytes:
    record = pb.Record()
    record.run.run_id = run_id
    record.run.project = "seg"
    record.run.display_name = "my run"
    item = record.run.config.update.add()
    item.key = "lr"
    item.value_json = json.dumps({"value": 0.001})
    return record.SerializeToString()


def test_records_split_across_blocks_are_joined(tmp_path):
    folder = tmp_path / "wandb" / "offline-run-20261201_120000-abc123"
    folder.mkdir(parents=True)
    big = history(1, loss=0.5, note_len=len("x" * 70000), blob=["x" * 70000])  # spans three blocks
    payloads = [run_record("abc123"), big] + [history(s, loss=1.0 / s) for s in range(2, 200)]
    (folder / "run-abc123.wandb").write_bytes(frames(payloads))
    assert find_run_folder(tmp_path, "abc123") == folder
    run = read_run_folder(folder)
    assert (run["run_id"], run["project"], run["name"], run["offline"], run["url"]) == (
        "abc123", "seg", "my run", True, None)
    assert run["config"] == {"lr": 0.001}, "W&B's value wrappers are unwrapped"
    points = metric_points(run["history"])
    assert points[0]["loss"] == 0.5 and len(points) == 199 and points[-1] == {"step": 199, "loss": 1.0 / 199}


def test_a_torn_tail_keeps_what_came_before_and_garbage_is_refused(tmp_path):
    folder = tmp_path / "run-20261201_120000-zz"
    folder.mkdir()
    data = frames([run_record("zz")] + [history(s, loss=float(s)) for s in range(1, 6)])
    (folder / "run-zz.wandb").write_bytes(data[:-5])  # killed mid-write
    points = metric_points(read_run_folder(folder)["history"])
    assert [p["step"] for p in points] == [1, 2, 3, 4]
    (folder / "run-zz.wandb").write_bytes(b"PK\x03\x04 not a log")
    with pytest.raises(WandbFileError, match="not a W&B transaction log"):
        read_run_folder(folder)
    assert find_run_folder(tmp_path, "nope") is None

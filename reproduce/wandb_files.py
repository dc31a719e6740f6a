"""Reading a W&B run folder without the W&B service: history, summary, config, identity.

A run folder (`wandb/run-DATE-ID` online, `wandb/offline-run-DATE-ID` offline) holds the
run's transaction log, `run-ID.wandb`: a 7-byte header (`:W&B`, magic 0xBEE1, version)
and then records in 32 KiB blocks, each record framed as (CRC32, length, type) and
split across blocks when it does not fit (types: 1 full, 2 first, 3 middle, 4 last). The
payloads are `wandb_internal_pb2.Record` protobufs: the protobuf classes come from the
wandb package (only they are imported, not the SDK). A synced run also has
`files/wandb-summary.json` and `files/config.yaml`; those are read where present.

Never imports `ledger`.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, Optional

_HEADER = b":W&B"
_HEADER_LEN = 7
_BLOCK = 32768
_FRAME = 7


class WandbFileError(Exception):
    """The folder is not a W&B run folder, or its log is unreadable; one line."""


def find_run_folder(wandb_dir: Path, run_id: str) -> Optional[Path]:
    """The run folder of `run_id` under `wandb_dir` (the folder holding `wandb/`, or `wandb/` itself)."""
    for base in (Path(wandb_dir) / "wandb", Path(wandb_dir)):
        if base.is_dir():
            matches = sorted(p for p in base.glob(f"*-{run_id}") if p.is_dir())
            if matches:
                return matches[-1]
    return None


def _payloads(data: bytes) -> list[bytes]:
    if data[:4] != _HEADER:
        raise WandbFileError("not a W&B transaction log (no :W&B header)")
    out, pending, pos = [], b"", _HEADER_LEN
    while pos + _FRAME <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _FRAME:  # the rest of a block too short for a frame is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + _FRAME])
        pos += _FRAME
        chunk = data[pos:pos + length]
        pos += length
        if kind == 1:
            out.append(chunk)
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            out.append(pending + chunk)
            pending = b""
        elif kind == 0 and length == 0:
            continue
        else:
            break  # a torn tail: what came before is kept
    return out


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return text


def _key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)


def read_log(path: Path) -> dict[str, Any]:
    """History, summary, config and identity from a `run-ID.wandb` file.

    Raises:
        WandbFileError: not such a file, or the wandb package (for its protobufs) is missing.
    """
    try:
        from wandb.proto import wandb_internal_pb2 as pb
    except ImportError:
        raise WandbFileError("reading a W&B run log needs the wandb package: pip install wandb") from None
    out: dict[str, Any] = {"history": [], "summary": {}, "config": {}, "run_id": None, "project": None,
                           "entity": None, "name": None, "start_time": None, "notes": None, "tags": [],
                           "program": None, "commit": None, "remote": None}
    for payload in _payloads(Path(path).read_bytes()):
        record = pb.Record()
        try:
            record.ParseFromString(payload)
        except Exception:  # a damaged record: skip it, keep the rest
            continue
        kind = record.WhichOneof("record_type")
        if kind == "history":
            out["history"].append({_key(i): _value(i.value_json) for i in record.history.item})
        elif kind == "summary":
            for item in record.summary.update:
                if _key(item):
                    out["summary"][_key(item)] = _value(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                out["config"][_key(item)] = _value(item.value_json)
        elif kind == "environment" and record.environment.program:
            env = record.environment
            out["program"] = {"program": env.program, "args": list(env.args), "code_path": env.code_path or None,
                              "root": env.root or None, "executable": env.executable or None,
                              "python": env.python or None, "host": env.host or None,
                              "commit": env.git.commit or None, "remote": env.git.remote_url or None}
        elif kind == "run":
            run = record.run
            out.update(run_id=run.run_id or None, project=run.project or None, entity=run.entity or None,
                       name=run.display_name or None, notes=run.notes or None, tags=list(run.tags),
                       start_time=run.start_time.seconds or None, commit=run.git.commit or None,
                       remote=run.git.remote_url or None)
            for item in run.config.update:
                out["config"][_key(item)] = _value(item.value_json)
    return out


def read_run_folder(folder: Path) -> dict[str, Any]:
    """What a run folder says: its log, with the synced summary and config files over it where present.

    `config` values keep W&B's `{"value": ...}` wrappers unwrapped and its `_wandb` key dropped.
    """
    folder = Path(folder)
    logs = sorted(folder.glob("run-*.wandb"))
    if not logs:
        raise WandbFileError(f"{folder} holds no run-*.wandb log")
    out = read_log(logs[-1])
    files = folder / "files"
    summary = files / "wandb-summary.json"
    if summary.is_file():
        try:
            out["summary"].update(json.loads(summary.read_text(encoding="utf-8")))
        except json.JSONDecodeError:
            pass
    metadata = files / "wandb-metadata.json"
    if out.get("program") is None and metadata.is_file():
        try:
            meta = json.loads(metadata.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            meta = {}
        if meta.get("program"):
            git = meta.get("git") or {}
            out["program"] = {"program": meta["program"], "args": list(meta.get("args") or []),
                              "code_path": meta.get("codePath"), "root": meta.get("root"),
                              "executable": meta.get("executable"), "python": meta.get("python"),
                              "host": meta.get("host"), "commit": git.get("commit"), "remote": git.get("remote")}
    out["config"] = {k: (v.get("value") if isinstance(v, dict) and "value" in v else v)
                     for k, v in out["config"].items() if k != "_wandb"}
    out["offline"] = folder.name.startswith("offline-run-")
    if not out["offline"] and out["entity"] and out["project"] and out["run_id"]:
        out["url"] = f"https://wandb.ai/{out['entity']}/{out['project']}/runs/{out['run_id']}"
    else:
        out["url"] = None
    out["folder"] = str(folder)
    return out


def metric_points(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """History rows as `ledger.log` records: `step` from `_step`, W&B's own `_` keys dropped,
    numbers only."""
    points = []
    for index, row in enumerate(history):
        step = row.get("_step", index)
        record = {"step": int(step) if isinstance(step, (int, float)) else index}
        for key, value in row.items():
            if not key.startswith("_") and isinstance(value, (int, float)) and not isinstance(value, bool):
                record[key] = float(value)
        if len(record) > 1:
            points.append(record)
    return points

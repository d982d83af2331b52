"""Metric writers: one protocol, the same numbers in jsonl, TensorBoard and (offline) W&B."""
import glob
import struct
import time

import numpy as np
import pytest

from cql_jax import writers

SEEDS = (3, 7)
TRAIN = {"critic/loss": np.array([1.5, 2.5]), "steps_per_second": 40.0}
EVAL = {"eval/return": np.array([-10.0, -30.0])}


def _write_all(writer):
  writer.write(20, "train", TRAIN)
  writer.write(20, "eval", EVAL)
  writer.write(40, "train", {"critic/loss": np.array([0.5, 0.25]), "steps_per_second": 50.0})
  writer.close()


def _records(path, header: int):
  """Payloads of a length-prefixed record file (TFRecord: header 0; W&B's LevelDB log: 7)."""
  data = open(path, "rb").read()
  out = []
  if header == 0:  # TFRecord: u64 length, u32 crc, payload, u32 crc.
    pos = 0
    while pos < len(data):
      (n,) = struct.unpack("<Q", data[pos:pos + 8])
      out.append(data[pos + 12:pos + 12 + n])
      pos += 12 + n + 4
    return out
  pos, block, chunk = header, 32768, b""  # LevelDB log: u32 crc, u16 length, u8 type, payload.
  while pos + 7 <= len(data):
    if block - pos % block < 7:
      pos += block - pos % block
      continue
    _, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
    chunk += data[pos + 7:pos + 7 + n]
    pos += 7 + n
    if kind in (1, 4):  # FULL or LAST
      out.append(chunk)
      chunk = b""
  return out


def test_jsonl_and_tensorboard_hold_the_same_values(tmp_path):
  from tensorboardX.proto import event_pb2
  _write_all(writers.make_writers(tmp_path, SEEDS))
  records = writers.read_jsonl(tmp_path / writers.METRICS_FILE)
  assert records[0] == {"step": 20, "kind": "train", "seeds": [3, 7], "critic/loss": [1.5, 2.5],
                        "steps_per_second": 40.0}
  assert records[1]["eval/return"] == [-10.0, -30.0] and records[2]["critic/loss"] == [0.5, 0.25]

  def scalars(run):
    out = {}
    for path in glob.glob(str(tmp_path / "tb" / run / "events.*")):
      for payload in _records(path, 0):
        event = event_pb2.Event.FromString(payload)
        for v in event.summary.value:
          out[(v.tag, event.step)] = v.simple_value
    return out
  seed7, mean = scalars("seed_7"), scalars("mean")
  assert seed7[("critic/loss", 20)] == 2.5 and seed7[("critic/loss", 40)] == 0.25
  assert seed7[("eval/return", 20)] == -30.0
  assert mean[("eval/return", 20)] == -20.0            # eval means go to tb/mean
  assert mean[("train/steps_per_second", 40)] == 50.0   # scalars too
  assert ("critic/loss", 20) not in mean                # per-seed train values do not


def test_wandb_writer_logs_offline(tmp_path, monkeypatch):
  pytest.importorskip("wandb")
  from google.protobuf.message import DecodeError
  from wandb.proto import wandb_internal_pb2
  monkeypatch.setenv("WANDB_MODE", "offline")
  _write_all(writers.make_writers(tmp_path, SEEDS, tensorboard=False, wandb=True,
                                  config={"agent": {"gamma": 0.99}}))
  run_id = (tmp_path / writers.WANDB_DIR / "run_id").read_text().strip()
  files = glob.glob(str(tmp_path / writers.WANDB_DIR / "wandb" / f"offline-run-*-{run_id}" / "*.wandb"))
  assert len(files) == 1
  # W&B's service process writes the offline file; finish() may return before its last block
  # reaches the disk (seen on a loaded machine), so read until the history is there or 30 s pass.
  deadline = time.monotonic() + 30.0
  while True:
    rows = {}
    try:
      for payload in _records(files[0], 7):
        record = wandb_internal_pb2.Record.FromString(payload)
        if record.WhichOneof("record_type") == "history":
          row = {item.key or "/".join(item.nested_key): float(item.value_json)
                 for item in record.history.item}
          rows[int(row["_step"])] = row
    except DecodeError:  # a record cut short by a write still in flight: read again.
      rows = {}
    if len(rows) >= 2 or time.monotonic() > deadline:
      break
    time.sleep(0.5)
  assert sorted(rows) == [20, 40]
  assert rows[20]["seed_3/critic/loss"] == 1.5 and rows[20]["seed_7/eval/return"] == -30.0
  assert rows[20]["eval/return"] == -20.0 and rows[20]["critic/loss"] == 2.0
  assert rows[40]["train/steps_per_second"] == 50.0 and rows[40]["seed_7/critic/loss"] == 0.25
  # A second writer on the same workdir (a resume) continues the same W&B run id.
  writers.make_writers(tmp_path, SEEDS, tensorboard=False, wandb=True).close()
  assert (tmp_path / writers.WANDB_DIR / "run_id").read_text().strip() == run_id


def test_wandb_requested_but_missing_says_how_to_install(tmp_path, monkeypatch):
  monkeypatch.setattr(writers, "wandb_available", lambda: False)
  with pytest.raises(ImportError, match=r"cql_jax\[wandb\]"):
    writers.make_writers(tmp_path, SEEDS, wandb=True)
  assert not (tmp_path / writers.METRICS_FILE).exists()


def test_run_names_name_the_tensorboard_runs_and_go_into_the_jsonl(tmp_path):
  names = ["cql.weight=1,seed_3", "cql.weight=5,seed_3"]
  _write_all(writers.make_writers(tmp_path, (3,), run_names=names))
  assert sorted(p.name for p in (tmp_path / "tb").iterdir()) == sorted(names + ["mean"])
  record = writers.read_jsonl(tmp_path / writers.METRICS_FILE)[0]
  assert record["members"] == names and record["seeds"] == [3]

"""The built-in sample legacy project that `nmig demo` migrates: it looks like a real team's project.

A dozen training runs with metrics of tens of thousands of points, logs, parameters of every atom type, tags,
a model file, a source-code FileSet, an image FileSeries, the `monitoring/<hash>/` namespaces the 2.x client
records, one trashed run, and a model with versions. Everything is derived from a seed, so two calls give the
same fixture (fixture format v1, documented in docs/legacy-fixture-format.md).
"""

from __future__ import annotations

import base64
import math
import random
import struct
import zlib
from datetime import datetime, timedelta, timezone
from typing import Any

SAMPLE_WORKSPACE = "acme"
SAMPLE_PROJECT = "vision"
SAMPLE_KEY = "VIS"

_EPOCH = datetime(2023, 3, 1, 9, 0, tzinfo=timezone.utc)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def tiny_png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A valid, uncompressed-looking PNG of one colour: enough for an image series, no imaging library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(row * height)) + chunk(b"IEND", b"")


_TRAIN_PY = '''"""Train a small image classifier."""
import argparse

def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=1e-3)
    print(parser.parse_args())

if __name__ == "__main__":
    main()
'''


def _run(index: int, rng: random.Random, points: int) -> dict[str, Any]:
    started = _EPOCH + timedelta(days=index, minutes=rng.randint(0, 600))
    duration_s = points * 0.05
    lr = [1e-2, 3e-3, 1e-3, 3e-4][index % 4]
    batch = [32, 64, 128][index % 3]
    steps = list(range(points))
    stamps = [_ms(started) + int(i * 50) for i in steps]
    decay = 2.0 + rng.random()
    loss = [round(2.3 * math.exp(-decay * i / points) + 0.05 * rng.random(), 6) for i in steps]
    acc = [round(min(0.999, 0.1 + 0.85 * (1 - math.exp(-decay * i / points)) + 0.01 * rng.random()), 6) for i in steps]
    epochs = 20
    val_steps = [float(e) for e in range(epochs)]
    val_stamps = [_ms(started) + int((e + 1) * duration_s * 1000 / epochs) for e in range(epochs)]
    val_loss = [round(2.0 * math.exp(-decay * e / epochs) + 0.1, 6) for e in range(epochs)]
    host = f"gpu-node-{index % 3 + 1}"
    monitor = f"monitoring/{index * 7919 % 0xFFFFFF:06x}"
    sample_steps = list(range(0, points, max(1, points // 60)))
    attributes: dict[str, Any] = {
        "sys/name": {"type": "string", "value": f"resnet-sweep-{index:02d}"},
        "sys/description": {"type": "string", "value": f"lr={lr} batch={batch}"},
        "sys/tags": {"type": "stringSet", "values": ["resnet", "sweep", f"lr-{lr}"]},
        "sys/group_tags": {"type": "stringSet", "values": ["q1-sweep"]},
        "sys/creation_time": {"type": "datetime", "value": _iso(started)},
        "sys/modification_time": {"type": "datetime", "value": _iso(started + timedelta(seconds=duration_s))},
        "sys/owner": {"type": "string", "value": "ana"},
        "sys/hostname": {"type": "string", "value": host},
        "sys/running_time": {"type": "float", "value": round(duration_s, 3)},
        "sys/state": {"type": "experimentState", "value": "idle"},
        "parameters/lr": {"type": "float", "value": lr},
        "parameters/batch_size": {"type": "int", "value": batch},
        "parameters/optimizer": {"type": "string", "value": ["adam", "sgd"][index % 2]},
        "parameters/augment": {"type": "bool", "value": index % 2 == 0},
        "parameters/weight_decay": {"type": "float", "value": 0.0 if index % 3 else "NaN"},
        "parameters/started_at": {"type": "datetime", "value": _iso(started)},
        "parameters/layers": {"type": "stringSet", "values": ["conv1", "layer1", "layer2", "fc"]},
        "train/loss": {"type": "floatSeries", "steps": steps, "values": loss, "timestamps": stamps},
        "train/accuracy": {"type": "floatSeries", "steps": steps, "values": acc, "timestamps": stamps},
        "val/loss": {"type": "floatSeries", "steps": val_steps, "values": val_loss, "timestamps": val_stamps},
        "logs/train": {
            "type": "stringSeries",
            "steps": [float(s) for s in sample_steps],
            "values": [f"step {s}: loss={loss[s]:.4f} acc={acc[s]:.4f}" for s in sample_steps],
            "timestamps": [stamps[s] for s in sample_steps],
        },
        f"{monitor}/cpu": {
            "type": "floatSeries",
            "steps": [float(s) for s in range(len(sample_steps))],
            "values": [round(40 + 50 * rng.random(), 2) for _ in sample_steps],
            "timestamps": [stamps[s] for s in sample_steps],
        },
        f"{monitor}/hostname": {"type": "string", "value": host},
        f"{monitor}/stdout": {
            "type": "stringSeries",
            "steps": [0.0, 1.0],
            "values": ["Epoch 1/20", "Epoch 2/20"],
            "timestamps": [_ms(started) + 1000, _ms(started) + 2000],
        },
        "source_code/entrypoint": {"type": "string", "value": "train.py"},
        "source_code/git": {
            "type": "gitRef",
            "commit": {
                "commitId": f"{rng.getrandbits(160):040x}",
                "message": "Tune the learning-rate schedule",
                "authorName": "Ana Lima",
                "authorEmail": "ana@example.com",
                "commitDate": _iso(started - timedelta(hours=2)),
            },
            "branch": "main",
            "remotes": ["git@example.com:acme/vision.git"],
            "dirty": index % 4 == 0,
        },
        "source_code/files": {
            "type": "fileSet",
            "files": {"train.py": {"content_text": _TRAIN_PY}, "configs/base.yaml": {"content_text": f"lr: {lr}\n"}},
        },
        "model/weights": {"type": "file", "ext": "bin", "content_base64": base64.b64encode(rng.randbytes(4096)).decode()},
        "eval/confusion": {
            "type": "imageSeries",
            "steps": [0.0, 1.0, 2.0],
            "timestamps": [val_stamps[0], val_stamps[9], val_stamps[19]],
            "names": ["epoch 1", "epoch 10", "epoch 20"],
            "descriptions": ["early", "middle", "final"],
            "contents_base64": [
                base64.b64encode(tiny_png(8, 8, (30 * k, 200 - 40 * k, 90))).decode() for k in range(3)
            ],
        },
    }
    if index % 2 == 0:
        attributes["sys/custom_run_id"] = {"type": "string", "value": f"sweep-{index:02d}-{rng.getrandbits(32):08x}"}
    return {"attributes": attributes}


def sample_fixture(runs: int = 12, points: int = 20_000, seed: int = 2023) -> dict[str, Any]:
    """The sample project as a fixture-format-v1 dict; `points` is the length of the main metrics."""
    rng = random.Random(seed)
    run_list = [_run(i, rng, points) for i in range(runs)]
    # One abandoned run that someone trashed: exported only with --include-trashed.
    run_list.append(
        {
            "attributes": {
                "sys/name": {"type": "string", "value": "abandoned-debug-run"},
                "sys/trashed": {"type": "bool", "value": True},
                "parameters/lr": {"type": "float", "value": 0.1},
            }
        }
    )
    versions = [
        {
            "attributes": {
                "sys/stage": {"type": "string", "value": stage},
                "model/binary": {"type": "file", "ext": "bin", "content_base64": base64.b64encode(rng.randbytes(2048)).decode()},
                "validation/accuracy": {"type": "float", "value": acc},
            }
        }
        for stage, acc in (("archived", 0.81), ("staging", 0.88), ("production", 0.91))
    ]
    return {
        "fixture_version": 1,
        "workspace": SAMPLE_WORKSPACE,
        "projects": [
            {
                "name": SAMPLE_PROJECT,
                "key": SAMPLE_KEY,
                "visibility": "priv",
                "description": "Image classification experiments (sample project of nmig demo)",
                "attributes": {"general/dataset": {"type": "string", "value": "imagenet-subset-v3"}},
                "runs": run_list,
                "models": [
                    {
                        "key": "CLS",
                        "attributes": {"sys/name": {"type": "string", "value": "resnet-classifier"}},
                        "versions": versions,
                    }
                ],
            }
        ],
    }

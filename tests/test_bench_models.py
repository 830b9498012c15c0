"""`make bench`'s runtime benchmark runs end to end (on a tiny model) and reports what it says."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("open_clip")
sys.path.insert(0, str(ROOT / "bench"))

import bench_models  # noqa: E402

TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1},
}


def test_bench_models_measures_every_runtime_in_its_own_process(tmp_path: Path) -> None:
    config = tmp_path / "imgfinder-tiny-bench.json"
    config.write_text(json.dumps(TINY_CONFIG))
    out = tmp_path / "results"
    assert (
        bench_models.main(
            [
                "--model-config",
                str(config),
                "--rounds",
                "2",
                "--out",
                str(out),
                "--onnx-dir",
                str(tmp_path / "onnx"),
            ]
        )
        == 0
    )
    report = json.loads((out / "models.json").read_text())
    assert report["model"] == "imgfinder-tiny-bench" and report["rounds"] == 2
    keys = set()
    for runtime in bench_models.RUNTIMES:
        speed, memory = report["speed"][runtime], report["memory"][runtime]
        keys.add(speed["key"])
        for batch in bench_models.BATCHES:
            assert speed[f"images_per_s_batch_{batch}"] > 0
        assert speed["texts_per_s_batch_32"] > 0
        assert 0 < speed["query_latency_ms_p50"] <= speed["query_latency_ms_p90"]
        assert 0 < memory["peak_rss_images_mb"] <= memory["peak_rss_mb"]
    assert len(keys) == 3, "each runtime is its own embedder key"
    parity = report["parity"]
    assert parity["onnx fp32 vs torch, images"] > 0.9999
    assert parity["onnx fp32 vs torch, texts"] > 0.9999
    assert parity["onnx-int8 vs onnx fp32, texts"] > 0.9
    speed = report["speed"]
    assert report["ratios"]["onnx texts/s vs torch"] == pytest.approx(
        speed["onnx"]["texts_per_s_batch_32"] / speed["torch"]["texts_per_s_batch_32"], rel=1e-3
    )
    table = (out / "models.md").read_text()
    for runtime in bench_models.RUNTIMES:
        assert f"| {runtime} |" in table
    for check in bench_models.TARGETS:
        assert f"| {check} |" in table


def test_a_worker_that_dies_ends_the_run_with_an_error(tmp_path: Path) -> None:
    """Not a parent waiting forever on a pipe (the worker cannot load a missing config)."""
    with pytest.raises(RuntimeError, match="worker died"):
        bench_models.run_workers(None, 1, tmp_path / "no-such-config.json")

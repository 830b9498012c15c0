"""Embedder runtimes on a ViT-B/32-shaped open_clip model: torch fp32, ONNX fp32, ONNX int8.

Random (seeded) weights: the speed and memory of a real ViT-B/32 without a download; parity
between runtimes on random weights is indicative only (real activations are tamer).
Runtimes are measured in interleaved rounds, so a neighbour's load hits them alike; peak
memory is measured in a fresh process per runtime.

    python bench/bench_models.py [--rounds 5] [--out bench/results]

Writes models.json and models.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from imgfinder.embedders import onnx as onnx_runtime  # noqa: E402
from imgfinder.embedders.openclip import OpenClipEmbedder  # noqa: E402

ARCHITECTURE = "ViT-B-32"
RUNTIMES = ("torch", "onnx", "onnx-int8")
BATCHES = (1, 8, 32)
QUERIES = [
    "a dog running on the beach",
    "кошка спит на подоконнике",
    "sunset over the mountains",
    "красная машина у дома",
    "a birthday cake with candles",
    "дети играют в снегу",
    "a bowl of fruit on a wooden table",
    "старый город ночью",
]
TARGETS = {
    "onnx images/s vs torch (batch 8)": 1.15,
    "onnx texts/s vs torch": 1.3,
    "onnx-int8 images/s vs torch (batch 8)": 1.8,
    "onnx fp32 vs torch min cosine": 0.9999,
    "onnx-int8 vs onnx fp32 min cosine": 0.99,
}


def embedder(runtime: str, onnx_dir: Path | None) -> OpenClipEmbedder:
    return OpenClipEmbedder(ARCHITECTURE, runtime=runtime, onnx_dir=onnx_dir)


def timed(call: Any, *args: Any) -> float:
    started = time.perf_counter()
    call(*args)
    return time.perf_counter() - started


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum(axis=1).min())


def measure_speed(onnx_dir: Path | None, rounds: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Throughput and latency per runtime, interleaved round by round; plus parity."""
    models = {runtime: embedder(runtime, onnx_dir) for runtime in RUNTIMES}
    setup = {}
    for runtime, model in models.items():
        setup[runtime] = round(timed(model.embed_texts, ["warm up"]), 2)
    size = models["torch"].image_size
    pixels = onnx_runtime.sample_images(models["torch"].preprocess.to_dict(), count=32)
    texts = [QUERIES[i % len(QUERIES)] for i in range(32)]
    times: dict[str, dict[str, list[float]]] = {r: {} for r in RUNTIMES}
    for _ in range(rounds):
        for runtime, model in models.items():
            record = times[runtime]
            for batch in BATCHES:
                calls = max(1, 8 // batch)
                elapsed = sum(timed(model.embed_prepared, pixels[:batch]) for _ in range(calls))
                record.setdefault(f"images_b{batch}", []).append(calls * batch / elapsed)
            record.setdefault("texts_b32", []).append(32 / timed(model.embed_texts, texts))
            for query in QUERIES[:4]:
                latency = timed(model.embed_texts, [query])
                record.setdefault("query_ms", []).append(latency * 1000)
    results: dict[str, Any] = {}
    for runtime, record in times.items():
        results[runtime] = {
            "key": models[runtime].key,
            "first_use_seconds": setup[runtime],
            **{
                name.replace("images_b", "images_per_s_batch_"): round(statistics.median(v), 2)
                for name, v in record.items()
                if name.startswith("images")
            },
            "texts_per_s_batch_32": round(statistics.median(record["texts_b32"]), 1),
            "query_latency_ms_p50": round(statistics.median(record["query_ms"]), 2),
            "query_latency_ms_p90": round(float(np.percentile(record["query_ms"], 90)), 2),
        }
    vectors = {r: m.embed_prepared(pixels) for r, m in models.items()}
    text_vectors = {r: m.embed_texts(texts) for r, m in models.items()}
    parity = {
        "onnx fp32 vs torch, images": min_cosine(vectors["onnx"], vectors["torch"]),
        "onnx fp32 vs torch, texts": min_cosine(text_vectors["onnx"], text_vectors["torch"]),
        "onnx-int8 vs onnx fp32, images": min_cosine(vectors["onnx-int8"], vectors["onnx"]),
        "onnx-int8 vs onnx fp32, texts": min_cosine(
            text_vectors["onnx-int8"], text_vectors["onnx"]
        ),
        "onnx-int8 vs torch, images": min_cosine(vectors["onnx-int8"], vectors["torch"]),
        "stored at export (fp32)": models["onnx"].parity,
        "stored at export (int8)": models["onnx-int8"].parity,
        "image_size": size,
    }
    return results, parity


def child(runtime: str, onnx_dir: str) -> None:
    """Runs in a fresh process: index-like then search-like work with one runtime; peak RSS."""
    model = embedder(runtime, Path(onnx_dir) if onnx_dir else None)
    pixels = onnx_runtime.sample_images(
        {"size": model.image_size, "mean": model.mean, "std": model.std}, count=32
    )
    model.embed_prepared(pixels)
    images_only = {
        "peak_rss_images_mb": round(_status_mb("VmHWM"), 1),
        "torch_imported_for_images": "torch" in sys.modules,
    }
    model.embed_texts(QUERIES)
    report = {**images_only, "peak_rss_mb": round(_status_mb("VmHWM"), 1)}
    print(json.dumps(report | {"torch_imported": "torch" in sys.modules}))


def _status_mb(field: str) -> float:
    """A memory figure of this process from /proc (VmHWM: peak RSS since exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure_memory(onnx_dir: Path | None) -> dict[str, Any]:
    out = {}
    for runtime in RUNTIMES:
        command = [sys.executable, __file__, "--child", runtime, "--onnx-dir", str(onnx_dir or "")]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        out[runtime] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def environment() -> dict[str, Any]:
    import onnxruntime
    import torch

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "onnx_threads": onnx_runtime.physical_cores(),
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def ratios(speed: dict[str, Any], parity: dict[str, Any]) -> dict[str, float]:
    torch_, fp32, int8 = speed["torch"], speed["onnx"], speed["onnx-int8"]
    return {
        "onnx images/s vs torch (batch 8)": fp32["images_per_s_batch_8"]
        / torch_["images_per_s_batch_8"],
        "onnx texts/s vs torch": fp32["texts_per_s_batch_32"] / torch_["texts_per_s_batch_32"],
        "onnx-int8 images/s vs torch (batch 8)": int8["images_per_s_batch_8"]
        / torch_["images_per_s_batch_8"],
        "onnx fp32 vs torch min cosine": min(
            parity["onnx fp32 vs torch, images"], parity["onnx fp32 vs torch, texts"]
        ),
        "onnx-int8 vs onnx fp32 min cosine": min(
            parity["onnx-int8 vs onnx fp32, images"], parity["onnx-int8 vs onnx fp32, texts"]
        ),
    }


def markdown(report: dict[str, Any]) -> str:
    speed, memory, env = report["speed"], report["memory"], report["environment"]
    lines = [
        f"# Embedder runtimes: {ARCHITECTURE} (random weights)",
        "",
        f"{env['cpu']}, {env['logical_cpus']} logical CPUs; ONNX Runtime {env['onnx_threads']} "
        f"threads, torch {env['torch_threads']}; load average at start "
        f"{env['load_average_at_start']}, at end {report['load_average_at_end']}. "
        f"Medians of {report['rounds']} interleaved rounds.",
        "",
        "| runtime | img/s b1 | img/s b8 | img/s b32 | texts/s b32 | query p50 ms "
        "| query p90 ms | peak RSS MB images | peak RSS MB + texts | first use s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for runtime in RUNTIMES:
        row = speed[runtime]
        lines.append(
            f"| {runtime} | {row['images_per_s_batch_1']} | {row['images_per_s_batch_8']} "
            f"| {row['images_per_s_batch_32']} | {row['texts_per_s_batch_32']} "
            f"| {row['query_latency_ms_p50']} | {row['query_latency_ms_p90']} "
            f"| {memory[runtime]['peak_rss_images_mb']} | {memory[runtime]['peak_rss_mb']} "
            f"| {row['first_use_seconds']} |"
        )
    lines += ["", "| check | measured | target | |", "|---|---:|---:|---|"]
    for name, value in report["ratios"].items():
        target = TARGETS[name]
        lines.append(f"| {name} | {value:.4f} | {target} | {'ok' if value >= target else 'MISS'} |")
    lines += [
        "",
        "First use includes the one-off ONNX export and int8 quantisation when not cached.",
        "Peak RSS is per fresh process: 32 images, then 8 queries; torch imported by the ONNX",
        "runtimes: "
        + ", ".join(f"{r} {memory[r]['torch_imported']}" for r in RUNTIMES if r != "torch")
        + ".",
        "Texts are short captions; padding after the end token is trimmed before the text tower",
        "in every runtime (exact for causal text towers), so a query costs its own length.",
        "On a shared machine torch's spinning OpenMP threads suffer more from neighbours' load",
        "than ONNX Runtime's (spinning off): compare the load averages above before the ratios.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--onnx-dir", default=None, help="ONNX cache (default models/cache/onnx)")
    parser.add_argument("--child", choices=RUNTIMES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.onnx_dir or "")
        return 0
    onnx_dir = Path(args.onnx_dir) if args.onnx_dir else None
    env = environment()
    speed, parity = measure_speed(onnx_dir, args.rounds)
    memory = measure_memory(onnx_dir)
    report = {
        "model": ARCHITECTURE,
        "weights": "random, seed 0",
        "rounds": args.rounds,
        "environment": env,
        "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
        "speed": speed,
        "memory": memory,
        "parity": parity,
    }
    report["ratios"] = {name: round(value, 4) for name, value in ratios(speed, parity).items()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "models.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "models.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

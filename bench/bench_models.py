"""Embedder runtimes on a ViT-B/32-shaped open_clip model: torch fp32, ONNX fp32, ONNX int8;
then every architecture of the model registry on ONNX fp32 and int8 (bench_registry.py).

Random (seeded) weights: the speed and memory of a real ViT-B/32 without a download; parity
between runtimes on random weights is indicative only (real activations are tamer).
Each runtime runs in its own process (as in the product), measured in interleaved rounds so a
neighbour's load hits them alike; peak memory is measured in a fresh process per runtime.
Exports go to a temporary folder (fresh every run) unless --work names one to keep.

    python bench/bench_models.py [--rounds 3] [--registry-rounds 3] [--out bench/results]

Writes models.json and models.md. With --model-config (tests) or --no-registry, only the
runtime comparison runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "bench"))

import bench_registry  # noqa: E402

from imgfinder.embedders import export, onnx_runtime  # noqa: E402
from imgfinder.embedders.families.openclip import OpenClipEmbedder  # noqa: E402

ARCHITECTURE = "ViT-B-32"
RUNTIMES = ("torch", "onnx", "onnx-int8")
BATCHES = (1, 8, 32)
#: the single-query latency texts: the first of the sweep's queries
QUERIES = bench_registry.TEXTS[:8]
TARGETS = {
    "onnx images/s vs torch (batch 8)": 1.15,
    "onnx texts/s vs torch": 1.3,
    "onnx-int8 images/s vs torch (batch 8)": 1.8,
    "onnx fp32 vs torch min cosine": 0.9999,
    "onnx-int8 vs onnx fp32 min cosine": 0.99,
}


def embedder(runtime: str, onnx_dir: Path | None, config: Path | None = None) -> OpenClipEmbedder:
    """The benchmarked model; `config` registers an open_clip JSON config first (tests)."""
    if config is not None:
        import open_clip

        open_clip.add_model_config(config)
    return OpenClipEmbedder(
        config.stem if config else ARCHITECTURE, runtime=runtime, onnx_dir=onnx_dir
    )


def timed(call: Any, *args: Any) -> float:
    started = time.perf_counter()
    call(*args)
    return time.perf_counter() - started


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum(axis=1).min())


def one_round(model: OpenClipEmbedder, pixels: np.ndarray, texts: list[str]) -> dict[str, Any]:
    """Images/s at each batch size, texts/s at batch 32 and single-query latencies."""
    record: dict[str, Any] = {}
    for batch in BATCHES:
        calls = max(1, 8 // batch)
        elapsed = sum(timed(model.embed_prepared, pixels[:batch]) for _ in range(calls))
        record[f"images_b{batch}"] = calls * batch / elapsed
    record["texts_b32"] = 32 / timed(model.embed_texts, texts)
    record["query_ms"] = [timed(model.embed_texts, [query]) * 1000 for query in QUERIES[:4]]
    return record


def worker(runtime: str, onnx_dir: Path | None, config: Path | None, connection: Any) -> None:
    """One runtime in its own process, as in the product: nothing else's threads beside it.

    (In one process, torch's OpenMP threads still spin after a call while the next runtime
    starts.) It first does index-like then search-like work (32 images, then 8 queries) and
    reports the time and peak memory that took; then answers "round" with one round's timings
    and "vectors" with its embeddings.
    """
    started = time.perf_counter()
    model = embedder(runtime, onnx_dir, config)
    pixels = export.sample_images(model.preprocess.to_dict(), count=32)
    model.embed_prepared(pixels)
    memory = {
        "peak_rss_images_mb": round(_status_mb("VmHWM"), 1),
        "torch_imported_for_images": "torch" in sys.modules,
    }
    model.embed_texts(QUERIES)
    first_use = time.perf_counter() - started
    memory |= {
        "peak_rss_mb": round(_status_mb("VmHWM"), 1),
        "torch_imported": "torch" in sys.modules,
    }
    connection.send({"key": model.key, "first_use_seconds": round(first_use, 2), "memory": memory})
    texts = [QUERIES[i % len(QUERIES)] for i in range(32)]
    while (command := connection.recv()) != "stop":
        if command == "round":
            connection.send(one_round(model, pixels, texts))
        else:
            vectors = (model.embed_prepared(pixels), model.embed_texts(texts))
            connection.send((*vectors, model.parity, model.image_size))


def _status_mb(field: str) -> float:
    """A memory figure of this process from /proc (VmHWM: peak RSS since exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_workers(
    onnx_dir: Path | None, rounds: int, config: Path | None
) -> tuple[dict[str, Any], dict[str, dict[str, list[float]]], dict[str, Any]]:
    """(setup, timings, embeddings) per runtime from one worker process each.

    A worker that dies ends the run with an error instead of a parent waiting forever: the
    parent keeps no copy of the workers' pipe ends, and stops every worker on the way out.
    """
    context = multiprocessing.get_context("spawn")
    connections, processes, setup = {}, [], {}

    def ask(runtime: str, command: str | None = None) -> Any:
        connection = connections[runtime]
        if command is not None:
            connection.send(command)
        try:
            return connection.recv()
        except EOFError:
            raise RuntimeError(f"the {runtime} worker died") from None

    try:
        for runtime in RUNTIMES:
            ours, theirs = context.Pipe()
            process = context.Process(
                target=worker, args=(runtime, onnx_dir, config, theirs), daemon=True
            )
            process.start()
            theirs.close()
            connections[runtime] = ours
            processes.append(process)
            setup[runtime] = ask(runtime)
        times: dict[str, dict[str, list[float]]] = {r: {} for r in RUNTIMES}
        for _ in range(rounds):
            for runtime in RUNTIMES:
                for name, value in ask(runtime, "round").items():
                    values = value if isinstance(value, list) else [value]
                    times[runtime].setdefault(name, []).extend(values)
        embedded = {runtime: ask(runtime, "vectors") for runtime in RUNTIMES}
        for connection in connections.values():
            connection.send("stop")
    finally:
        for connection in connections.values():
            connection.close()  # a worker still waiting for a command sees the end and exits
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
                process.join()
    return setup, times, embedded


def measure(onnx_dir: Path | None, rounds: int, config: Path | None = None) -> dict[str, Any]:
    """Speed, memory and parity per runtime, one process each, interleaved round by round.

    Interleaving makes a neighbour's load hit every runtime alike. The ONNX export (and int8
    quantisation) is made once, before the workers start, so they do not race for it.
    """
    export_seconds = timed(embedder("onnx-int8", onnx_dir, config).embed_texts, ["export"])
    setup, times, embedded = run_workers(onnx_dir, rounds, config)
    memory = {runtime: found.pop("memory") for runtime, found in setup.items()}
    results: dict[str, Any] = {}
    for runtime, record in times.items():
        results[runtime] = {
            **setup[runtime],
            **{
                name.replace("images_b", "images_per_s_batch_"): round(statistics.median(v), 2)
                for name, v in record.items()
                if name.startswith("images")
            },
            "texts_per_s_batch_32": round(statistics.median(record["texts_b32"]), 1),
            "query_latency_ms_p50": round(statistics.median(record["query_ms"]), 2),
            "query_latency_ms_p90": round(float(np.percentile(record["query_ms"], 90)), 2),
        }
    images = {runtime: found[0] for runtime, found in embedded.items()}
    texts = {runtime: found[1] for runtime, found in embedded.items()}
    parity = {
        "onnx fp32 vs torch, images": min_cosine(images["onnx"], images["torch"]),
        "onnx fp32 vs torch, texts": min_cosine(texts["onnx"], texts["torch"]),
        "onnx-int8 vs onnx fp32, images": min_cosine(images["onnx-int8"], images["onnx"]),
        "onnx-int8 vs onnx fp32, texts": min_cosine(texts["onnx-int8"], texts["onnx"]),
        "onnx-int8 vs torch, images": min_cosine(images["onnx-int8"], images["torch"]),
        "stored at export (fp32)": embedded["onnx"][2],
        "stored at export (int8)": embedded["onnx-int8"][2],
        "image_size": embedded["torch"][3],
    }
    return {
        "export_seconds": round(export_seconds, 2),
        "speed": results,
        "memory": memory,
        "parity": parity,
    }


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
    registry_section = report.get("registry")
    title = (
        "# Embedder models and runtimes (random weights)"
        if registry_section
        else f"# Embedder runtimes: {report['model']} (random weights)"
    )
    lines = [
        title,
        "",
        f"{env['cpu']}, {env['logical_cpus']} logical CPUs; ONNX Runtime {env['onnx_threads']} "
        f"threads, torch {env['torch_threads']}; load average (1, 5, 15 min) at start "
        f"{env['load_average_at_start']}, at end {report['load_average_at_end']}"
        + (f"; whole run {report['wall_seconds']:.0f} s" if "wall_seconds" in report else "")
        + ".",
        "",
    ]
    if registry_section:
        lines += [bench_registry.markdown(registry_section), ""]
        lines += [f"## Runtimes: {report['model']}, torch against ONNX", ""]
    lines += [
        f"Medians of {report['rounds']} interleaved rounds, each runtime in its own process.",
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
        "First use: a fresh process loading the model, embedding 32 images, then 8 queries;",
        "the one-off ONNX export and int8 quantisation before it took "
        f"{report['export_seconds']} s (near 0 when cached). Peak RSS is of that same work;",
        "torch imported by the ONNX runtimes: "
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
    parser.add_argument("--rounds", type=int, default=3, help="runtime comparison rounds")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--onnx-dir", default=None, help="ONNX cache (default <model dir>/onnx)")
    parser.add_argument(
        "--model-config",
        type=Path,
        default=None,
        help=f"an open_clip model config JSON to measure instead of {ARCHITECTURE} (tests)",
    )
    parser.add_argument("--no-registry", action="store_true", help="runtime comparison only")
    parser.add_argument("--registry-rounds", type=int, default=3)
    parser.add_argument(
        "--image-seconds",
        type=float,
        default=25.0,
        help="gallery time per network (fp32 + int8), which sizes its gallery",
    )
    parser.add_argument("--only", nargs="*", default=None, help="registry keys (dev runs)")
    parser.add_argument("--work", type=Path, default=None, help="keep the exports here")
    args = parser.parse_args(argv)
    config = args.model_config.resolve() if args.model_config else None
    started = time.perf_counter()
    env = environment()
    report: dict[str, Any] = {
        "model": config.stem if config else ARCHITECTURE,
        "weights": "random, seed 0",
        "rounds": args.rounds,
        "environment": env,
    }
    with contextlib.ExitStack() as stack:
        if config is not None or args.no_registry:
            onnx_dir = Path(args.onnx_dir) if args.onnx_dir else None
            measured = measure(onnx_dir, args.rounds, config)
        else:
            work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory()))
            found: dict[str, Any] = {}

            def runtimes() -> None:  # on the sweep's own ViT-B-32 export, before its measuring
                print("== runtimes", flush=True)
                found.update(measure(work / "onnx", args.rounds))

            report["registry"] = bench_registry.sweep(
                work,
                args.registry_rounds,
                args.image_seconds,
                args.only,
                log=lambda line: print(line, flush=True),
                before_measuring=runtimes,
            )
            measured = found
    report |= {
        "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
        "wall_seconds": round(time.perf_counter() - started, 1),
        **measured,
    }
    report["ratios"] = {
        name: round(value, 4)
        for name, value in ratios(measured["speed"], measured["parity"]).items()
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "models.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "models.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

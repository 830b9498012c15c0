"""Whole-pipeline indexing images/s next to embedder-only images/s on the same JPEGs and model.

The model is a ViT-B-32-shaped open_clip model with random weights (speed does not depend on
weight values). Pipeline and embedder-only runs alternate so that both see the same machine.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from common import photo_like, write_result

from imgfinder.embedders.families.openclip import OpenClipEmbedder
from imgfinder.media.images import open_image
from imgfinder.search import SearchModel

SIZES = {"2MP": (1632, 1224), "12MP": (4000, 3000)}


def make_folder(root: Path, size: tuple[int, int], count: int) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(count):
        path = root / f"img_{number:04d}.jpg"
        photo_like(*size, seed=number).save(path, quality=90)
        paths.append(path)
    return paths


def embed_only(embedder, prepared: np.ndarray, batch: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(prepared), batch):
        embedder.embed_prepared(prepared[start : start + batch])
    return len(prepared) / (time.perf_counter() - started)


def pipeline(embedder, folder: Path, workdir: Path, batch: int, workers: int) -> float:
    collection = workdir / f"c{time.perf_counter_ns()}"
    model = SearchModel(collection, embedder)
    started = time.perf_counter()
    report = model.index([folder], batch_size=batch, workers=workers)
    elapsed = time.perf_counter() - started
    model.close()
    shutil.rmtree(collection)
    assert report.indexed == len(list(folder.iterdir())), report.summary()
    return report.indexed / elapsed


def cpu_per_image(fn, items) -> float:
    started = time.process_time()
    for item in items:
        fn(item)
    return (time.process_time() - started) / len(items) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    embedder = OpenClipEmbedder("ViT-B-32", pretrained=None, runtime="torch")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for label, size in SIZES.items():
            paths = make_folder(work / label, size, args.count)
            prepare = lambda p: embedder.prepare_image(  # noqa: E731
                open_image(p, target_size=embedder.image_size)
            )
            prepared = np.stack([prepare(p) for p in paths])
            embedder.embed_prepared(prepared[:4])
            decode_ms = cpu_per_image(prepare, paths[:32])
            embed_ms = (
                cpu_per_image(
                    lambda chunk: embedder.embed_prepared(chunk),
                    [prepared[i : i + args.batch] for i in range(0, len(prepared), args.batch)],
                )
                * len(range(0, len(prepared), args.batch))
                / len(prepared)
            )
            only, whole = [], []
            for _ in range(args.rounds):
                only.append(embed_only(embedder, prepared, args.batch))
                whole.append(pipeline(embedder, work / label, work, args.batch, args.workers))
            rows[label] = {
                "images": args.count,
                "embed_only_images_per_s": statistics.median(only),
                "pipeline_images_per_s": statistics.median(whole),
                "ratio": statistics.median(whole) / statistics.median(only),
                "decode_cpu_ms_per_image": decode_ms,
                "embed_cpu_ms_per_image": embed_ms,
                "runs": {"embed_only": only, "pipeline": whole},
            }
    table = [
        "| JPEG | embedder only img/s | whole pipeline img/s | ratio | decode CPU ms/img "
        "| embed CPU ms/img |",
        "|---|---|---|---|---|---|",
    ]
    for label, row in rows.items():
        table.append(
            f"| {label} | {row['embed_only_images_per_s']:.1f} | "
            f"{row['pipeline_images_per_s']:.1f} | {row['ratio']:.2f} | "
            f"{row['decode_cpu_ms_per_image']:.1f} | {row['embed_cpu_ms_per_image']:.1f} |"
        )
    text = "\n".join(table)
    print(text)
    write_result(
        "pipeline",
        {"model": "ViT-B-32 (random weights, torch fp32)", "batch": args.batch, "sizes": rows},
        "# Indexing pipeline vs embedder alone\n\n" + text,
    )


if __name__ == "__main__":
    main()

"""PCA-reduced indexes: recall@10 against the full dimension, per size, on two collections.

- the demo world (the bundled demo model, 128-d), 2,000 scenes indexed through the real
  pipeline, searched by 200 English and Russian captions and 100 of its own images;
- 50,000 vectors of bench_scale's hard 512-d distribution (anisotropic, overlapping
  clusters, queries from a shifted copy).

Each reduced index is the exact backend over the projected vectors, so the figures are what
the projection loses and nothing else. Sizes are bytes per stored vector as float16.

    python bench/bench_pca.py [--scenes 2000] [--vectors 50000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_scale import Distribution  # noqa: E402
from common import write_result  # noqa: E402

from imgfinder.demo import world  # noqa: E402
from imgfinder.indexers.registry import create_indexer  # noqa: E402
from imgfinder.search import SearchModel  # noqa: E402


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(
        np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)])
    )


def measure(
    vectors: np.ndarray, queries: dict[str, np.ndarray], fractions: list[int]
) -> list[dict[str, Any]]:
    """One row per dimension: recall@10 of each query set against the full-dimension ranking."""
    dim = vectors.shape[1]
    ids = np.arange(len(vectors), dtype=np.int64)
    full = create_indexer("exact", dim, storage="float32")
    full.add(ids, vectors)
    truth = {name: full.search(q, 10)[1] for name, q in queries.items()}
    rows = []
    for divisor in fractions:
        dims = dim // divisor
        started = time.perf_counter()
        if divisor == 1:
            index = full
        else:
            index = create_indexer("exact", dim, storage="float32", pca=dims)
            index.add(ids, vectors)
        built = time.perf_counter() - started
        rows.append(
            {
                "dims": dims,
                "bytes_per_vector_fp16": dims * 2,
                "share_of_full_size": dims / dim,
                **{
                    f"recall@10 {name}": recall(index.search(q, 10)[1], truth[name])
                    for name, q in queries.items()
                },
                "fit_and_build_s": built,
            }
        )
    return rows


def demo_world(scenes: int, workdir: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    world.write_demo_folder(workdir / "media", scenes, seed=20261202, size=96)
    model = SearchModel(workdir / "collection", "demo")
    model.index([workdir / "media"])
    _, _, stored = model.stored("image")
    sample = world.make_dataset(200, seed=5)
    texts = world.make_queries(sample, "en", 100, seed=6).texts
    texts += world.make_queries(sample, "ru", 100, seed=7).texts
    picked = np.random.default_rng(0).choice(len(stored), 100, replace=False)
    queries = {"captions": model.embedder.embed_texts(texts), "images": stored[picked]}
    model.close()
    return stored, queries


def table(title: str, rows: list[dict[str, Any]]) -> str:
    names = [key for key in rows[0] if key.startswith("recall@10 ")]
    head = "| dims | bytes/vector (fp16) | size | " + " | ".join(names) + " |"
    lines = [f"**{title}**", "", head, "|" + "---:|" * (3 + len(names))]
    for row in rows:
        cells = [
            str(row["dims"]),
            str(row["bytes_per_vector_fp16"]),
            f"{row['share_of_full_size']:.0%}",
        ]
        cells += [f"{row[name]:.3f}" for name in names]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenes", type=int, default=2000)
    parser.add_argument("--vectors", type=int, default=50_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stored, queries = demo_world(args.scenes, Path(tmp))
    demo_rows = measure(stored, queries, [1, 2, 4, 8])
    rng = np.random.default_rng(1)
    distribution = Distribution()
    vectors = distribution.sample(args.vectors, rng)
    hard = {"shifted queries": distribution.sample(200, rng, shifted=True)}
    hard_rows = measure(vectors, hard, [1, 2, 4, 8])
    text = "\n\n".join(
        [
            "# PCA-reduced indexes: recall@10 against the full dimension",
            table(f"Demo world, {len(stored):,} images, demo model (128-d)", demo_rows),
            table(f"bench_scale's 512-d distribution, {args.vectors:,} vectors", hard_rows),
            "The projection is fitted on the stored vectors (uncentred), then stored and query "
            "vectors are projected and made unit length; the exact backend searches them. "
            "Recall only: this run shares the machine, so no speed is claimed here.",
        ]
    )
    print(text)
    write_result("pca", {"demo": demo_rows, "scale_512": hard_rows}, text)


if __name__ == "__main__":
    main()

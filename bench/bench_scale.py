"""`make bench-scale`: 512-d vectors at 10^5 (or 10^6 with --million) through a real collection
(vector file and catalog) and each indexer configuration; not part of `make bench`.

The vectors are anisotropic (a decaying spectrum under a random rotation) and drawn around
overlapping clusters; queries come from a shifted copy of the same distribution, as CLIP's text
vectors sit apart from its image vectors, so recall is hard to get (the gap between each query's
10th and 11th exact neighbour is reported). Each configuration runs in two fresh processes: one
builds its index from the collection's vector file and saves it, one opens it and searches, so
build and open times and peak memory are each process's own. A filter keeping 1 % of the items
(one folder of a hundred) is searched too, as the catalog answers it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from common import StoredVectors, write_result  # noqa: E402

from imgfinder.filters import Filter  # noqa: E402
from imgfinder.indexers.common import exact_search  # noqa: E402
from imgfinder.search import SearchModel  # noqa: E402
from imgfinder.store.catalog import NewFile  # noqa: E402
from imgfinder.store.collection import Collection  # noqa: E402

DIM = 512
KEY = "bench-scale-512"
ROOT = "/bench"
FOLDERS = 100  # one folder is the 1 % filter
QUERIES = 200
FILTERED_FOLDER = f"{ROOT}/f007"
BATCH = {"exact": 32}  # queries per batch call; exact scans every row per query
CONFIGS: dict[str, tuple[str, dict[str, Any], list[dict[str, Any]]]] = {
    # name -> (indexer, build parameters, query-time settings to measure)
    "exact float16 (mapped)": ("exact", {}, [{}]),
    "exact float32 (in memory)": ("exact", {"storage": "float32"}, [{}]),
    "faiss HNSW32": ("faiss", {"factory": "HNSW32"}, [{"efSearch": 64}, {"efSearch": 128}]),
    "faiss HNSW32_SQ8": (
        "faiss",
        {"factory": "HNSW32_SQ8"},
        [{"efSearch": 64}, {"efSearch": 128}, {"efSearch": 256}],
    ),
    "nmslib HNSW": ("hnsw", {}, [{"efSearch": 64}, {"efSearch": 128}]),
    # compact codes find candidates, the collection's float16 vectors score them exactly
    "faiss IVF1024,PQ64 + re-rank": (
        "faiss",
        {"factory": "IVF1024,PQ64", "rerank": 10},
        [{"nprobe": 16, "rerank": 10}, {"nprobe": 32, "rerank": 10}, {"nprobe": 32, "rerank": 20}],
    ),
    "faiss SQ8 (int8 store) + re-rank": ("faiss", {"factory": "SQ8", "rerank": 4}, [{}]),
}
#: at 10^6 only what fits a laptop: float32 copies alone would take 2-4 GB per process
MILLION = (
    "exact float16 (mapped)",
    "faiss HNSW32_SQ8",
    "faiss IVF1024,PQ64 + re-rank",
    "faiss SQ8 (int8 store) + re-rank",
)


class Distribution:
    """Anisotropic, overlapping clusters in 512-d, and queries shifted off them."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.scale = (1.0 + np.arange(DIM)) ** -0.6
        self.rotation = np.linalg.qr(rng.standard_normal((DIM, DIM)))[0].astype(np.float32)
        self.centres = rng.standard_normal((300, DIM)).astype(np.float32) * self.scale
        shift = rng.standard_normal(DIM).astype(np.float32)
        self.shift = shift / np.linalg.norm(shift) * float(np.linalg.norm(self.scale))

    def sample(self, n: int, rng: np.random.Generator, shifted: bool = False) -> np.ndarray:
        labels = rng.integers(0, len(self.centres), n)
        spread = rng.standard_normal((n, DIM)).astype(np.float32) * self.scale * 0.9
        points = (self.centres[labels] + spread) @ self.rotation
        if shifted:
            points = points + self.shift
        return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def build_collection(directory: Path, n: int) -> None:
    """n items in 100 folders, their float16 vectors in the collection's own vector file."""
    collection = Collection(directory, create=True)
    collection.register_embedder("bench", KEY, DIM, None)
    store = collection.vectors(KEY, DIM)
    catalog = collection.catalog
    root_id = catalog.ensure_roots([ROOT])[ROOT]
    distribution, rng = Distribution(), np.random.default_rng(1)
    for start in range(0, n, 20000):
        count = min(20000, n - start)
        rows = store.append(distribution.sample(count, rng))
        files = [
            NewFile(f"{ROOT}/f{i % FOLDERS:03d}/{i}.jpg", root_id, 1000, 10**18, f"{i:020x}")
            for i in range(start, start + count)
        ]
        catalog.add_images(files, rows.tolist(), KEY)
    collection.close()


def memory() -> dict[str, float]:
    """This process's peak and current resident memory, in MB (anonymous: its own pages)."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmHWM", "RssAnon", "RssFile"):
            fields[name] = int(value.split()[0]) / 1024
    return {"peak_mb": fields["VmHWM"], "anon_mb": fields["RssAnon"], "file_mb": fields["RssFile"]}


def run_config(directory: Path, name: str, phase: str) -> dict[str, Any]:
    """One phase of one configuration, in this (fresh) process."""
    indexer, params, settings = CONFIGS[name]
    started = time.perf_counter()
    model = SearchModel(directory, StoredVectors(KEY, DIM), indexer=indexer, indexer_params=params)
    index = model.vector_index()
    seconds = time.perf_counter() - started
    if phase == "build":
        return {"build_s": seconds, **memory()}
    queries = np.load(directory / "queries.npy")
    truth = np.load(directory / "truth.npy")
    filtered_truth = np.load(directory / "filtered_truth.npy")
    started = time.perf_counter()
    allowed = model.passing(Filter(folder=FILTERED_FOLDER))
    filter_s = time.perf_counter() - started
    results = []
    for setting in settings:
        if setting:
            index.set_search_params(**setting)  # type: ignore[attr-defined]
        single, found = [], []
        for query in queries:
            began = time.perf_counter()
            found.append(index.search(query[None], 10)[1][0])
            single.append(time.perf_counter() - began)
        filtered, filtered_found = [], []
        for query in queries:
            began = time.perf_counter()
            filtered_found.append(index.search(query[None], 10, allowed)[1][0])
            filtered.append(time.perf_counter() - began)
        batch = BATCH.get(indexer, 256)
        began = time.perf_counter()
        for start in range(0, len(queries), batch):
            index.search(queries[start : start + batch], 10)
        qps = len(queries) / (time.perf_counter() - began)
        results.append(
            {
                "setting": setting,
                "p50_ms": 1000 * float(np.median(single)),
                "p99_ms": 1000 * float(np.percentile(single, 99)),
                "batch_qps": qps,
                "recall10": recall(np.asarray(found), truth),
                "filtered_p50_ms": 1000 * float(np.median(filtered)),
                "filtered_recall10": recall(np.asarray(filtered_found), filtered_truth),
                "filtered_full": float(np.mean([(f >= 0).sum() == 10 for f in filtered_found])),
            }
        )
    disk = sum(p.stat().st_size for p in model._index_dir().rglob("*") if p.is_file())
    return {
        "open_s": seconds,
        "filter_s": filter_s,
        "disk_mb": disk / 2**20,
        "results": results,
        **memory(),
    }


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)]))


def prepare(directory: Path, n: int) -> dict[str, Any]:
    """The collection, its queries and their exact answers (from the stored float16 rows)."""
    started = time.perf_counter()
    build_collection(directory, n)
    built = time.perf_counter() - started
    queries = Distribution().sample(QUERIES, np.random.default_rng(2), shifted=True)
    collection = Collection(directory, create=False)
    snapshot = collection.catalog.snapshot(KEY)
    ids = np.fromiter(snapshot.rows, np.int64, len(snapshot.rows))
    rows = np.fromiter(snapshot.rows.values(), np.int64, len(ids))
    mapped = np.memmap(collection.vectors(KEY, DIM).path, dtype="<f2", mode="r", shape=(n, DIM))
    scores, found = exact_search(mapped, ids, queries, 11, rows)
    allowed = collection.catalog.matching_items(KEY, Filter(folder=FILTERED_FOLDER))
    keep = rows[np.isin(ids, allowed)]
    _, filtered = exact_search(mapped, ids, queries, 10, np.sort(keep))
    np.save(directory / "queries.npy", queries)
    np.save(directory / "truth.npy", found[:, :10])
    np.save(directory / "filtered_truth.npy", filtered)
    gap = scores[:, 9] - scores[:, 10]
    collection.close()
    return {
        "collection_s": built,
        "filtered_items": len(allowed),
        "gap_10_11": {
            "median": float(np.median(gap)),
            "p10": float(np.percentile(gap, 10)),
            "score_10_median": float(np.median(scores[:, 9])),
        },
    }


def table(n: int, setup: dict[str, Any], runs: dict[str, Any]) -> str:
    gap = setup["gap_10_11"]
    lines = [
        f"## Scale: {n:,} vectors of 512 (bench/bench_scale.py)",
        "",
        "Queries from a shifted distribution: the 10th neighbour scores "
        f"{gap['score_10_median']:.3f} (median); the gap to the 11th is {gap['median']:.4f} "
        f"(median), {gap['p10']:.4f} (p10). "
        f"The filter keeps {setup['filtered_items']:,} items (1 %).",
        "",
        "Memory is each process's own: the peak resident set of the process that built the "
        "index and of the one that opened and searched it (mapped file pages included), and "
        "the searching process's anonymous memory (its own pages, page cache aside).",
        "",
        "| configuration | setting | build s | build peak MB | open s | open peak MB | anon MB "
        "| disk MB | p50 ms | p99 ms | batch q/s | recall@10 | 1 % p50 ms | 1 % recall@10 "
        "| 1 % full |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, run in runs.items():
        built, opened = run["build"], run["open"]
        for result in opened["results"]:
            setting = ", ".join(f"{k} {v}" for k, v in result["setting"].items()) or "—"
            lines.append(
                f"| {name} | {setting} | {built['build_s']:.1f} | {built['peak_mb']:.0f} | "
                f"{opened['open_s']:.2f} | {opened['peak_mb']:.0f} | {opened['anon_mb']:.0f} | "
                f"{opened['disk_mb']:.0f} | "
                f"{result['p50_ms']:.2f} | {result['p99_ms']:.2f} | {result['batch_qps']:.0f} | "
                f"{result['recall10']:.3f} | {result['filtered_p50_ms']:.2f} | "
                f"{result['filtered_recall10']:.3f} | {result['filtered_full']:.2f} |"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--million", action="store_true", help="10^6 vectors instead of 10^5")
    parser.add_argument("--work", type=Path, default=Path("/tmp/imgfinder-bench-scale"))
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    args = parser.parse_args()
    n = 10**6 if args.million else 10**5
    directory = args.work / str(n)
    if args.run:
        print(json.dumps(run_config(directory, args.run, args.phase)))
        return 0
    shutil.rmtree(directory, ignore_errors=True)
    setup = prepare(directory, n)
    print(f"collection of {n:,} ready in {setup['collection_s']:.0f} s", flush=True)
    runs = {}
    for name in MILLION if args.million else CONFIGS:
        runs[name] = {}
        for phase in ("build", "open"):
            command = [sys.executable, __file__, "--work", str(args.work), "--run", name]
            command += ["--phase", phase] + (["--million"] if args.million else [])
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            runs[name][phase] = json.loads(out.strip().splitlines()[-1])
        print(f"{name}: done", flush=True)
    suffix = "-million" if args.million else ""
    write_result(f"scale{suffix}", {"n": n, "setup": setup, "runs": runs}, table(n, setup, runs))
    print(table(n, setup, runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())

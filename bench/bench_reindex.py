"""Incremental re-indexing of 1,000 photos: unchanged, renamed and deleted files.

Acceptance (issue 3): an unchanged re-index embeds 0 images in ≤ 5% of the first run's time;
10 renamed files are not re-embedded; 10 deleted files are never returned.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from common import photo_like, write_result

from imgfinder.embedders.base import Embedder
from imgfinder.embedders.families.openclip import OpenClipEmbedder
from imgfinder.search import SearchModel


class CountingEmbedder(Embedder):
    """Wraps an embedder and counts the images it embeds."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.image_size, self.mean, self.std = inner.image_size, inner.mean, inner.std
        self.embedded = 0

    @property
    def key(self) -> str:
        return self.inner.key

    @property
    def dim(self) -> int:
        return self.inner.dim

    def embed_prepared(self, batch):
        self.embedded += len(batch)
        return self.inner.embed_prepared(batch)

    def embed_texts(self, texts):
        return self.inner.embed_texts(texts)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1000)
    args = parser.parse_args()
    counting = CountingEmbedder(OpenClipEmbedder("ViT-B-32", pretrained=None, runtime="torch"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        for number in range(args.count):
            path = folder / f"d{number % 10}" / f"p{number:04d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            photo_like(640, 480, seed=number).save(path, quality=85)
        model = SearchModel(Path(tmp) / "c", counting)

        started = time.perf_counter()
        first = model.index([folder])
        first_s = time.perf_counter() - started
        first_embedded = counting.embedded

        started = time.perf_counter()
        model.index([folder])
        again_s = time.perf_counter() - started
        again_embedded = counting.embedded - first_embedded

        files = sorted(folder.rglob("*.jpg"))
        for path in files[:10]:
            os.rename(path, path.with_name("renamed_" + path.name))
        before = counting.embedded
        renamed = model.index([folder])
        renamed_embedded = counting.embedded - before

        deleted = files[10:20]
        for path in deleted:
            path.unlink()
        removed = model.index([folder])
        returned = {h.path for h in model.search_text("a photo", k=args.count)}
        deleted_returned = len({str(p) for p in deleted} & returned)

    rows = {
        "images": args.count,
        "first_run_s": first_s,
        "first_run_embedded": first_embedded,
        "first_run_indexed": first.indexed,
        "unchanged_run_s": again_s,
        "unchanged_run_embedded": again_embedded,
        "unchanged_ratio": again_s / first_s,
        "renamed": renamed.renamed,
        "renamed_embedded": renamed_embedded,
        "removed": removed.removed,
        "deleted_returned": deleted_returned,
    }
    table = "\n".join(
        [
            "| first run | unchanged re-run | ratio | embedded on re-run | renamed (embedded) "
            "| deleted (still returned) |",
            "|---|---|---|---|---|---|",
            f"| {first_s:.1f} s ({first_embedded} embedded) | {again_s:.2f} s | "
            f"{again_s / first_s:.1%} | {again_embedded} | {renamed.renamed} "
            f"({renamed_embedded}) | {removed.removed} ({deleted_returned}) |",
        ]
    )
    print(table)
    write_result(
        "reindex",
        {"model": "ViT-B-32 (random weights, torch fp32)", **rows},
        f"# Incremental re-indexing of {args.count} photos\n\n" + table,
    )


if __name__ == "__main__":
    main()

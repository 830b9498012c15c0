"""Relevance maps: how well they localise and what one costs, for the demo model and ViT-B/32.

Localisation: on generated composites of two or three different objects, the map of a query
naming one object must peak inside its box (the demo world knows the boxes). Cost: seconds
per map, median, for the masking method (ONNX Runtime; 250, 500 and 1,000 masks) and for
Grad-CAM (PyTorch). ViT-B/32 has random (seeded) weights: its speed is real, its maps are not,
so only its time is reported.

    python bench/bench_explain.py [--scenes 200] [--vit-maps 3]

Writes bench/results/explain.json and explain.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import write_result

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imgfinder.demo import world
from imgfinder.demo.acceptance import map_localisation
from imgfinder.embedders.base import Embedder
from imgfinder.embedders.families.demo import DemoEmbedder
from imgfinder.explain import DEFAULT_MASKS, relevance_map

MASKS = (250, DEFAULT_MASKS, 1000)


def localise(embedder: Embedder, scenes: int, method: str, masks: int) -> dict[str, Any]:
    """Share of maps peaking in the named object's box, and seconds per map (median, p90)."""
    rate, seconds = map_localisation(embedder, scenes, 20261203, method=method, masks=masks)
    return {
        "peak_in_box": round(rate, 3),
        "seconds_p50": round(statistics.median(seconds), 4),
        "seconds_p90": round(float(np.percentile(seconds, 90)), 4),
    }


def vit_seconds(runtime: str, method: str, maps: int, masks: int) -> float:
    """Median seconds per map with a random-weight open_clip ViT-B/32 on `runtime`."""
    from imgfinder.embedders.families.openclip import OpenClipEmbedder

    embedder = OpenClipEmbedder("ViT-B-32", runtime=runtime)
    target = embedder.embed_texts(["a red circle"])[0]
    image = world.render_composite(world.sample_composite(np.random.default_rng(1)), 256)
    relevance_map(embedder, image, target, method=method, masks=min(masks, 50))  # warm up
    seconds = []
    for _ in range(maps):
        started = time.perf_counter()
        relevance_map(embedder, image, target, method=method, masks=masks)
        seconds.append(time.perf_counter() - started)
    return round(statistics.median(seconds), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=200)
    parser.add_argument("--vit-maps", type=int, default=3)
    args = parser.parse_args()
    demo: dict[str, Any] = {}
    onnx = DemoEmbedder()
    for masks in MASKS:
        demo[f"masks {masks} (onnx)"] = localise(onnx, args.scenes, "masks", masks)
    demo["gradcam (torch)"] = localise(
        DemoEmbedder(runtime="torch"), args.scenes, "gradcam", DEFAULT_MASKS
    )
    vit = {
        f"masks {DEFAULT_MASKS} (onnx)": vit_seconds("onnx", "masks", args.vit_maps, DEFAULT_MASKS),
        "gradcam (torch)": vit_seconds("torch", "gradcam", args.vit_maps, 1),
    }
    lines = [
        "## Relevance maps",
        "",
        f"Demo model, {args.scenes} composites of 2–3 objects; a map counts when its peak is "
        "inside the named object's box.",
        "",
        "| method | peak in box | s/map p50 | s/map p90 |",
        "|---|---|---|---|",
        *(
            f"| {name} | {row['peak_in_box']:.3f} | {row['seconds_p50']:.3f} | "
            f"{row['seconds_p90']:.3f} |"
            for name, row in demo.items()
        ),
        "",
        "ViT-B/32 (random weights, speed only), 256 px image:",
        "",
        "| method | s/map p50 |",
        "|---|---|",
        *(f"| {name} | {seconds:.3f} |" for name, seconds in vit.items()),
    ]
    write_result("explain", {"demo": demo, "vit_b_32_seconds": vit}, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""Shared helpers for the benchmarks: realistic test media and result files."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

RESULTS = Path(__file__).resolve().parent / "results"


def photo_like(width: int, height: int, seed: int) -> Image.Image:
    """Gradients, shapes and sensor-like noise: JPEG-compresses like a photo, not a flat fill."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(9, 12, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        r = int(rng.integers(width // 40, width // 6))
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=color)
    array = np.asarray(image, dtype=np.int16)
    array = array + rng.integers(-10, 11, size=array.shape, dtype=np.int16)
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))


def write_result(name: str, data: dict[str, Any], table: str) -> None:
    """bench/results/<name>.json and <name>.md, with the machine they ran on."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or "?"},
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        **data,
    }
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2))
    (RESULTS / f"{name}.md").write_text(table + "\n")

"""Embed a video's sampled frames in batches and keep only small thumbnails of them."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imgfinder.atomic import atomic_write
from imgfinder.embedders.base import Embedder

THUMB_SIZE = 256


@dataclass
class VideoFrames:
    times: list[float] = field(default_factory=list)
    vectors: np.ndarray | None = None
    width: int | None = None
    height: int | None = None
    duration: float | None = None


def thumb_path(thumbs_dir: Path, t: float) -> Path:
    """Where the thumbnail of the frame at `t` seconds lives (millisecond names)."""
    return thumbs_dir / f"{round(t * 1000):010d}.jpg"


def embed_video_frames(
    path: Path,
    embedder: Embedder,
    *,
    every: float = 1.0,
    scene_cuts: bool = True,
    batch_size: int = 32,
    thumbs_dir: Path | None = None,
    cancel: threading.Event | None = None,
    time_limit: float = 600.0,
) -> VideoFrames:
    """Sample, thumbnail and embed the frames of one video; raises MediaError on bad input."""
    from imgfinder.media.video import probe_video, sample_frames

    info = probe_video(path)
    width, height = info.display_size
    result = VideoFrames(width=width, height=height, duration=info.duration)
    chunks: list[np.ndarray] = []
    batch: list[np.ndarray] = []
    for frame in sample_frames(
        path,
        every=every,
        scene_cuts=scene_cuts,
        target_size=embedder.image_size,
        time_limit=time_limit,
    ):
        if cancel is not None and cancel.is_set():
            break
        if thumbs_dir is not None:
            _write_thumb(thumb_path(thumbs_dir, frame.t), frame.image)
        result.times.append(float(frame.t))
        batch.append(embedder.prepare_image(frame.image))
        if len(batch) >= batch_size:
            chunks.append(embedder.embed_prepared(np.stack(batch)))
            batch = []
    if batch:
        chunks.append(embedder.embed_prepared(np.stack(batch)))
    result.vectors = (
        np.concatenate(chunks) if chunks else np.zeros((0, embedder.dim), dtype=np.float32)
    )
    return result


def _write_thumb(path: Path, image) -> None:
    thumb = image.copy()
    thumb.thumbnail((THUMB_SIZE, THUMB_SIZE))
    atomic_write(path, lambda handle: thumb.save(handle, format="JPEG", quality=85))

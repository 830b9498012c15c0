"""Embed a video's sampled frames in batches and keep only small thumbnails of them."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imgfinder.atomic import atomic_write
from imgfinder.embedders.base import Embedder
from imgfinder.errors import ConfigError

#: a frame thumbnail's longer side: the page's card size (`thumbs.GRID_SIZE`)
THUMB_SIZE = 320
#: frames are decoded with at least this shorter side when thumbnails are kept, so a 16:9
#: thumbnail fills a card instead of being the model's input (85x64 for the demo model) blown up
THUMB_SIDE = 180


@dataclass(frozen=True)
class VideoSampling:
    """How videos are indexed: a frame every `every` seconds plus one at each scene cut, within
    `time_limit` + `time_per_second` x duration seconds per file, so no file can hang a run."""

    every: float = 1.0
    scene_cuts: bool = True
    time_limit: float = 600.0
    time_per_second: float = 1.0

    def __post_init__(self) -> None:
        if not self.every > 0:
            raise ConfigError(f"every must be a positive number of seconds, not {self.every!r}")
        if not (self.time_limit >= 0 and self.time_per_second >= 0):
            raise ConfigError("video time limits must not be negative")


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
    sampling: VideoSampling | None = None,
    batch_size: int = 32,
    thumbs_dir: Path | None = None,
    cancel: threading.Event | None = None,
) -> VideoFrames:
    """Sample, thumbnail and embed the frames of one video; raises MediaError on bad input."""
    from imgfinder.media.video import probe_video, sample_frames

    sampling = sampling or VideoSampling()
    info = probe_video(path)
    width, height = info.display_size
    result = VideoFrames(width=width, height=height, duration=info.duration)
    chunks: list[np.ndarray] = []
    batch: list[np.ndarray] = []
    for frame in sample_frames(
        path,
        every=sampling.every,
        scene_cuts=sampling.scene_cuts,
        target_size=embedder.image_size
        if thumbs_dir is None
        else max(embedder.image_size, THUMB_SIDE),
        time_limit=sampling.time_limit,
        time_per_second=sampling.time_per_second,
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

"""The demo collection `make run` opens: generated images and short videos with known events."""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from imgfinder.indexing import IndexReport, Progress


@dataclass(frozen=True)
class VideoEvent:
    """An object on screen from `start` to `end` seconds of a generated video."""

    video: str
    colour: str
    shape: str
    start: float
    end: float
    query_en: str
    query_ru: str


DEMO_VIDEOS: dict[str, tuple[float, list[tuple[str, str, float, float, str, str]]]] = {
    "shapes_parade.mp4": (
        20.0,
        [
            ("red", "circle", 3.0, 5.0, "a red circle", "красный круг"),
            ("blue", "star", 8.0, 11.0, "a blue star", "синяя звезда"),
            ("green", "triangle", 14.0, 17.0, "a green triangle", "зелёный треугольник"),
        ],
    ),
    "street_camera.mp4": (
        16.0,
        [
            ("yellow", "square", 2.0, 6.0, "a yellow square", "жёлтый квадрат"),
            ("purple", "heart", 10.0, 13.0, "a purple heart", "фиолетовое сердце"),
        ],
    ),
}


#: queries the app offers one click away on the demo collection, in both languages
DEMO_EXAMPLES = ("красный круг", "синяя звезда", "a green triangle", "a purple heart")


def demo_events() -> list[VideoEvent]:
    return [
        VideoEvent(name, *event) for name, (_, events) in DEMO_VIDEOS.items() for event in events
    ]


def _frame_painter(
    events: list[tuple[str, str, float, float, str, str]], size: tuple[int, int], seed: int
) -> Callable[[float], Image.Image]:
    from imgfinder.demo.world import render, sample_scene

    rng = np.random.default_rng(seed)
    side = min(size)
    shown = [
        (start, end, render(sample_scene(rng, kind=(colour, shape)), side))
        for colour, shape, start, end, _, _ in events
    ]
    backdrop = Image.new("RGB", size, (128, 128, 128))

    def frame_at(t: float) -> Image.Image:
        frame = backdrop.copy()
        for start, end, picture in shown:
            if start <= t < end:
                frame.paste(picture, ((size[0] - side) // 2, (size[1] - side) // 2))
        return frame

    return frame_at


def write_demo_videos(folder: Path, *, fps: float = 10.0, seed: int = 7) -> Path:
    """Write the demo videos and `events.csv`; returns the CSV path."""
    from imgfinder.media.video import write_video

    folder.mkdir(parents=True, exist_ok=True)
    for number, (name, (duration, events)) in enumerate(DEMO_VIDEOS.items()):
        painter = _frame_painter(events, (320, 240), seed + number)
        write_video(folder / name, painter, fps=fps, duration=duration, size=(320, 240))
    events_csv = folder / "events.csv"
    with open(events_csv, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video", "colour", "shape", "start", "end", "query_en", "query_ru"])
        for event in demo_events():
            writer.writerow(
                [
                    event.video,
                    event.colour,
                    event.shape,
                    event.start,
                    event.end,
                    event.query_en,
                    event.query_ru,
                ]
            )
    return events_csv


def build_demo(
    folder: Path,
    collection: Path,
    *,
    images: int = 2000,
    seed: int = 2024,
    model: str = "demo",
    progress: Callable[[Progress], None] | None = None,
) -> IndexReport:
    """Generate the demo folder when missing, then index it into `collection`."""
    from imgfinder.demo.world import write_demo_folder
    from imgfinder.search import SearchModel

    if not (folder / "images" / "labels.csv").exists():
        write_demo_folder(folder / "images", images, seed)
    if not (folder / "videos" / "events.csv").exists():
        write_demo_videos(folder / "videos")
    search_model = SearchModel(collection, model)
    try:
        report = search_model.index([folder], progress=progress)
        search_model.vector_index()
        search_model.collection.manifest["examples"] = list(DEMO_EXAMPLES)
        search_model.collection.save_manifest()
    finally:
        search_model.close()
    return report

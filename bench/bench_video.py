"""Video frame sampling: video seconds per wall second and what each shortcut costs in accuracy.

Generates a 720p 30 fps clip with known truth (shot cuts at known frames, every frame stamped
with its index as a 12-bit barcode) in two encodings: "web" (x264 defaults: long GOP, B-frames,
keyframes at cuts) and "phone" (fixed 1 s GOP, no B-frames, no keyframes at cuts). Each strategy
samples one frame per second plus scene cuts (where it can), and is scored on:

- speed: video seconds per wall second, CPU seconds per video second;
- cuts: true cuts found (within 0.5 s), false cuts, mean offset of the found ones in frames;
- timestamps: |reported t - true time of the frame's content| (read back from the barcode);
- coverage: the longest gap between sampled frames.

Strategies: the library with decode="all" (default), with 2 decoder threads, with non-reference
frames skipped, keyframes only, and without scene detection; a naive full-size RGB conversion
of every frame; OpenCV grab()/retrieve() at the needed frames (no scene cuts) and OpenCV
read() of every frame with the same scene detector.
"""

from __future__ import annotations

import argparse
import inspect
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from common import write_result
from PIL import Image

from imgfinder.media.video import (
    SCENE_SIZE,
    SceneDetector,
    probe_video,
    sample_frames,
    tiny_luma,
    write_video,
)

BITS = 12
BLOCK = 24
EMBED_MS = 30.0  # a ViT-B/32 image embed on these CPUs: ~20-40 ms
DEFAULT_DECODE = inspect.signature(sample_frames).parameters["decode"].default


# ---------------------------------------------------------------- synthetic footage with truth


@dataclass
class Shape:
    color: np.ndarray
    radius: int
    x: float
    y: float
    vx: float
    vy: float
    disk: np.ndarray


@dataclass
class Shot:
    start: int  # first frame index
    background: np.ndarray  # (H + 2 * margin, W + 2 * margin, 3) uint8
    pan: tuple[float, float]  # px/s, bouncing within the margin
    shapes: list[Shape]


class Footage:
    """Shots of textured backgrounds that pan, moving discs, sensor noise and a frame barcode."""

    margin = 120

    def __init__(self, seconds: float, fps: int, size: tuple[int, int], seed: int = 0) -> None:
        self.fps = fps
        self.width, self.height = size
        self.frames = round(seconds * fps)
        rng = np.random.default_rng(seed)
        self.shots: list[Shot] = []
        start = 0
        number = 0
        while start < self.frames:
            fast = number == 2  # one shot with a fast pan and fast objects: a false-cut trap
            self.shots.append(self._shot(rng, start, fast))
            start += round(rng.uniform(2.5, 8.0) * fps)
            number += 1
        self.cuts = [shot.start / fps for shot in self.shots[1:]]
        self.noise = [
            rng.integers(-6, 7, (self.height, self.width, 3), dtype=np.int8).view(np.uint8)
            for _ in range(5)
        ]

    def _shot(self, rng: np.random.Generator, start: int, fast: bool) -> Shot:
        m = self.margin
        w, h = self.width + 2 * m, self.height + 2 * m
        coarse = rng.integers(20, 236, (6, 9, 3), dtype=np.uint8)
        background = np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC))
        texture = rng.integers(-14, 15, (h, w, 1), dtype=np.int16)
        background = np.clip(background.astype(np.int16) + texture, 12, 243).astype(np.uint8)
        speed = 500.0 if fast else 40.0
        pan = (float(rng.uniform(-1, 1) * speed), float(rng.uniform(-1, 1) * speed * 0.4))
        shapes = []
        for _ in range(int(rng.integers(3, 7))):
            radius = int(rng.integers(20, 110))
            yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
            v = 600.0 if fast else 150.0
            shapes.append(
                Shape(
                    color=rng.integers(12, 244, 3).astype(np.uint8),
                    radius=radius,
                    x=float(rng.uniform(0, self.width)),
                    y=float(rng.uniform(0, self.height)),
                    vx=float(rng.uniform(-v, v)),
                    vy=float(rng.uniform(-v, v)),
                    disk=xx * xx + yy * yy <= radius * radius,
                )
            )
        return Shot(start, background, pan, shapes)

    def shot_at(self, index: int) -> Shot:
        current = self.shots[0]
        for shot in self.shots:
            if shot.start <= index:
                current = shot
        return current

    @staticmethod
    def _bounce(position: float, low: float, high: float) -> float:
        span = high - low
        phase = (position - low) % (2 * span)
        return low + (phase if phase <= span else 2 * span - phase)

    def __call__(self, t: float) -> np.ndarray:
        index = round(t * self.fps)
        shot = self.shot_at(index)
        local = (index - shot.start) / self.fps
        m = self.margin
        ox = int(self._bounce(m + shot.pan[0] * local, 0, 2 * m))
        oy = int(self._bounce(m + shot.pan[1] * local, 0, 2 * m))
        frame = shot.background[oy : oy + self.height, ox : ox + self.width].copy()
        for shape in shot.shapes:
            cx = int(self._bounce(shape.x + shape.vx * local, 0, self.width - 1))
            cy = int(self._bounce(shape.y + shape.vy * local, 0, self.height - 1))
            self._disk(frame, shape, cx, cy)
        frame += self.noise[index % len(self.noise)]  # values stay in 6..249: no wrap-around
        self._stamp(frame, index)
        return frame

    def _disk(self, frame: np.ndarray, shape: Shape, cx: int, cy: int) -> None:
        r = shape.radius
        x0, y0 = max(cx - r, 0), max(cy - r, 0)
        x1, y1 = min(cx + r + 1, self.width), min(cy + r + 1, self.height)
        mask = shape.disk[y0 - (cy - r) : y1 - (cy - r), x0 - (cx - r) : x1 - (cx - r)]
        frame[y0:y1, x0:x1][mask] = shape.color

    def _stamp(self, frame: np.ndarray, index: int) -> None:
        top = self.height - BLOCK - 8
        frame[top - 4 : top + BLOCK + 4, 0 : 8 + BITS * BLOCK + 4] = 16
        for bit in range(BITS):
            if index >> bit & 1:
                x = 8 + bit * BLOCK
                frame[top : top + BLOCK, x : x + BLOCK] = 235

    def read_stamp(self, image: Image.Image) -> int:
        """Frame index stamped into a (possibly downscaled) frame."""
        gray = np.asarray(image.convert("L"), dtype=np.float32)
        sx, sy = image.width / self.width, image.height / self.height
        y = int((self.height - BLOCK - 8 + BLOCK / 2) * sy)
        index = 0
        for bit in range(BITS):
            x = int((8 + bit * BLOCK + BLOCK / 2) * sx)
            if gray[y, x] > 125:
                index |= 1 << bit
        return index


ENCODINGS = {
    "web": {"preset": "veryfast"},  # x264 defaults: keyint 250, keyframes at cuts, B-frames
    "phone": {"preset": "veryfast", "x264-params": "keyint=30:min-keyint=30:scenecut=0:bframes=0"},
    "phone-hevc": {  # iPhones record HEVC by default; slower to decode than H.264
        "preset": "ultrafast",
        "x265-params": "keyint=30:min-keyint=30:scenecut=0:bframes=0:log-level=error",
    },
}
CODECS = {"phone-hevc": "libx265"}


# ---------------------------------------------------------------------------- the strategies

Sampled = list[tuple[float, Image.Image, str]]


def library(**kwargs) -> Callable[[Path], Sampled]:
    def run(path: Path) -> Sampled:
        return [(f.t, f.image, f.reason) for f in sample_frames(path, time_limit=None, **kwargs)]

    return run


def kept_size(width: int, height: int) -> tuple[int, int]:
    """The library's rule: shorter side 224, the longer one rounded up."""
    scale = 224 / min(width, height)
    return math.ceil(width * scale - 1e-9), math.ceil(height * scale - 1e-9)


def naive_full_rgb(path: Path) -> Sampled:
    """What not to do: every decoded frame to full-size RGB, then PIL for everything."""
    import av

    out: Sampled = []
    detector = SceneDetector()
    next_t = 0.0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            t = float(frame.pts * stream.time_base)
            rgb = frame.to_image()
            luma = np.asarray(rgb.convert("L").resize(SCENE_SIZE, Image.Resampling.BOX))
            cut = detector.update(t, luma)
            interval = t >= next_t - 0.01
            if interval:
                next_t = math.floor(t + 0.01) + 1.0
            if cut or interval:
                small = rgb.resize(kept_size(*rgb.size), Image.Resampling.BILINEAR)
                out.append((t, small, "scene" if cut else "interval"))
    return out


def _cv2_capture(path: Path, threads: int | None):
    import cv2

    params = [] if threads is None else [cv2.CAP_PROP_N_THREADS, threads]
    return cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, params)


def _cv2_image(bgr: np.ndarray) -> Image.Image:
    import cv2

    h, w = bgr.shape[:2]
    small = cv2.resize(bgr, kept_size(w, h), interpolation=cv2.INTER_AREA)
    return Image.fromarray(cv2.cvtColor(small, cv2.COLOR_BGR2RGB))


def cv2_grab(threads: int | None) -> Callable[[Path], Sampled]:
    """grab() every frame (decodes, no colour conversion), retrieve() only on the 1 s grid."""

    def run(path: Path) -> Sampled:
        import cv2

        capture = _cv2_capture(path, threads)
        out: Sampled = []
        next_t = 0.0
        while capture.grab():
            t = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000
            if t >= next_t - 0.01:
                ok, bgr = capture.retrieve()
                if ok:
                    out.append((t, _cv2_image(bgr), "interval"))
                next_t = math.floor(t + 0.01) + 1.0
        capture.release()
        return out

    return run


def cv2_read_scene(threads: int | None) -> Callable[[Path], Sampled]:
    """read() every frame (full BGR conversion) and run the same scene detector on it."""

    def run(path: Path) -> Sampled:
        import cv2

        capture = _cv2_capture(path, threads)
        out: Sampled = []
        detector = SceneDetector()
        next_t = 0.0
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            t = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000
            gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
            cut = detector.update(t, cv2.resize(gray, SCENE_SIZE, interpolation=cv2.INTER_AREA))
            interval = t >= next_t - 0.01
            if interval:
                next_t = math.floor(t + 0.01) + 1.0
            if cut or interval:
                out.append((t, _cv2_image(bgr), "scene" if cut else "interval"))
        capture.release()
        return out

    return run


# ---------------------------------------------------------------------------------- scoring


def score(sampled: Sampled, footage: Footage, duration: float) -> dict[str, float]:
    fps = footage.fps
    errors = [abs(t - footage.read_stamp(image) / fps) for t, image, _ in sampled]
    found = [t for t, _, reason in sampled if reason == "scene"]
    matched, offsets = set(), []
    for cut in footage.cuts:
        near = [t for t in found if abs(t - cut) <= 0.5 and t not in matched]
        if near:
            best = min(near, key=lambda t: abs(t - cut))
            matched.add(best)
            offsets.append(abs(best - cut) * fps)
    times = sorted(t for t, _, _ in sampled)
    gaps = np.diff([0.0, *times, duration]) if times else [duration]
    return {
        "frames": len(sampled),
        "cuts_found": len(offsets),
        "cuts_true": len(footage.cuts),
        "false_cuts": len(found) - len(matched),
        "cut_offset_frames": statistics.fmean(offsets) if offsets else float("nan"),
        "t_error_mean_ms": 1000 * statistics.fmean(errors) if errors else float("nan"),
        "t_error_max_ms": 1000 * max(errors) if errors else float("nan"),
        "max_gap_s": float(max(gaps)),
    }


def timed_round_robin(
    chosen: dict[str, Callable[[Path], Sampled]], path: Path, repeats: int
) -> dict[str, tuple[Sampled, float, float]]:
    """Output, best wall and best CPU time of each strategy over `repeats` rounds.

    Rounds run every strategy in turn, so that load from other work on the shared machine
    falls on all of them alike rather than on whichever ran during a busy spell.
    """
    best: dict[str, tuple[Sampled, float, float]] = {}
    for _ in range(repeats):
        for label, fn in chosen.items():
            wall, cpu = time.perf_counter(), time.process_time()
            result = fn(path)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            _, best_wall, best_cpu = best.get(label, (result, math.inf, math.inf))
            best[label] = (result, min(best_wall, wall), min(best_cpu, cpu))
    return best


def pixel_error(sampled: Sampled, exact: Sampled, footage: Footage) -> float:
    """Mean |difference| (0-255) from the exact decode of the same frames, where both have one."""
    reference = {footage.read_stamp(image): image for _, image, _ in exact}
    errors = []
    for _, image, _ in sampled:
        other = reference.get(footage.read_stamp(image))
        if other is not None and other.size == image.size:
            diff = np.asarray(image, np.int16) - np.asarray(other, np.int16)
            errors.append(float(np.abs(diff).mean()))
    return statistics.fmean(errors) if errors else float("nan")


def per_frame_costs(path: Path, count: int = 90) -> dict[str, float]:
    """Milliseconds per frame of each step, on frames decoded from the clip."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        started = time.perf_counter()
        frames = []
        for frame in container.decode(stream):
            frames.append(frame)
            if len(frames) == count:
                break
        decode = (time.perf_counter() - started) / len(frames) * 1000

    def each(fn: Callable[[object], object]) -> float:
        started = time.perf_counter()
        for frame in frames:
            fn(frame)
        return (time.perf_counter() - started) / len(frames) * 1000

    def y_plane(frame) -> np.ndarray:
        plane = frame.planes[0]
        rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
        return rows[:: plane.height // 36, : plane.width : plane.width // 64]

    from av.video.reformatter import VideoReformatter

    luma_scaler, rgb_scaler = VideoReformatter(), VideoReformatter()
    small = kept_size(frames[0].width, frames[0].height)
    return {
        "decode": decode,
        "tiny_luma_sws_area_kept_scaler": each(lambda f: tiny_luma(f, luma_scaler)),
        "tiny_luma_sws_area_new_scaler": each(tiny_luma),
        "tiny_luma_y_plane_stride": each(y_plane),
        "keep_rgb_decoder_scaled_224": each(
            lambda f: rgb_scaler.reformat(
                f, *small, format="rgb24", interpolation="AREA"
            ).to_image()
        ),
        "keep_rgb_full_then_pil_resize": each(
            lambda f: f.to_image().resize(small, Image.Resampling.BILINEAR)
        ),
        "full_rgb_every_frame": each(lambda f: f.to_image()),
    }


def index_whole_video(
    path: Path, duration: float, runtimes: tuple[str, ...], repeats: int
) -> dict[str, dict[str, float]]:
    """`SearchModel.index` on the clip (probe, sample, embed, store) with a ViT-B-32-shaped
    model: video seconds per wall second, best of `repeats`, runtimes interleaved.

    Loading the model (and its one-off ONNX export) happens before the clock starts.
    """
    from imgfinder.embedders.families.openclip import OpenClipEmbedder
    from imgfinder.search import SearchModel

    walls: dict[str, list[float]] = {runtime: [] for runtime in runtimes}
    frames: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        embedders = {
            runtime: OpenClipEmbedder("ViT-B-32", None, runtime=runtime, onnx_dir=work / "onnx")
            for runtime in runtimes
        }
        for embedder in embedders.values():
            embedder.embed_images([Image.new("RGB", (224, 224))])
        for round_number in range(repeats):
            for runtime, embedder in embedders.items():
                model = SearchModel(work / f"{runtime}-{round_number}", embedder)
                started = time.perf_counter()
                report = model.index([path])
                walls[runtime].append(time.perf_counter() - started)
                model.close()
                if report.indexed != 1 or report.skipped:
                    raise RuntimeError(f"indexing {path.name} failed: {report.summary()}")
                frames[runtime] = report.frames
    return {
        runtime: {
            "video_s_per_wall_s": duration / min(times),
            "best_wall_s": min(times),
            "median_wall_s": statistics.median(times),
            "frames": frames[runtime],
        }
        for runtime, times in walls.items()
    }


def strategies(with_cv2: bool) -> dict[str, Callable[[Path], Sampled]]:
    chosen = {
        "pyav decode=all (exact), 1 thread": library(decode="all"),
        "pyav decode=all, 2 threads": library(decode="all", threads=2),
        "pyav decode=fast (no loop filter)": library(decode="fast"),
        "pyav decode=reference (+ skip non-ref frames)": library(decode="reference"),
        "pyav decode=keyframes": library(decode="keyframes"),
        "pyav decode=all, no scene cuts": library(decode="all", scene_cuts=False),
        "naive: full RGB of every frame": naive_full_rgb,
    }
    if with_cv2:
        chosen["cv2 grab+retrieve, 1 thread, no cuts"] = cv2_grab(1)
        chosen["cv2 grab+retrieve, default threads, no cuts"] = cv2_grab(None)
        chosen["cv2 read every frame + cuts, 1 thread"] = cv2_read_scene(1)
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--repeats", type=int, default=3, help="best of N rounds")
    parser.add_argument("--keep", type=Path, help="keep the generated clips in this folder")
    parser.add_argument(
        "--runtimes", default="onnx,torch", help="runtimes of the whole-indexing measurement"
    )
    args = parser.parse_args()
    runtimes = tuple(r for r in args.runtimes.split(",") if r)
    try:
        import cv2  # noqa: F401

        with_cv2 = True
    except ImportError:
        with_cv2 = False
    size = (args.height * 16 // 9 // 2 * 2, args.height)
    footage = Footage(args.seconds, args.fps, size)
    rows: dict[str, dict[str, dict[str, float]]] = {}
    whole: dict[str, dict[str, dict[str, float]]] = {}
    clips: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for name, options in ENCODINGS.items():
            path = folder / f"{name}_{args.height}p{args.fps}_{args.seconds:g}s.mp4"
            started = time.perf_counter()
            encoded = not path.exists()  # clips in a --keep folder are reused between runs
            if encoded:
                write_video(
                    path,
                    footage,
                    fps=args.fps,
                    duration=args.seconds,
                    size=size,
                    codec=CODECS.get(name, "libx264"),
                    codec_options=options,
                )
            info = probe_video(path)
            clips[name] = {
                "encode_s": time.perf_counter() - started if encoded else None,
                "bytes": path.stat().st_size,
                "duration": info.duration,
                "options": options,
            }
            print(f"{name}: {clips[name]}", file=sys.stderr)
            clips[name]["per_frame_ms"] = per_frame_costs(path)
            rows[name] = {}
            runs = timed_round_robin(strategies(with_cv2), path, args.repeats)
            exact = next(iter(runs.values()))[0]  # the first strategy is the exact decode
            for label, (sampled, wall, cpu) in runs.items():
                duration = info.duration or args.seconds
                row = {
                    "video_s_per_wall_s": duration / wall,
                    "video_s_per_cpu_s": duration / cpu,
                    "cpu_s_per_video_s": cpu / duration,
                    "wall_s": wall,
                    **score(sampled, footage, duration),
                    "pixel_error_vs_exact": pixel_error(sampled, exact, footage),
                }
                embed_s = row["frames"] * EMBED_MS / 1000
                row["realtime_with_embed"] = duration / (wall + embed_s)
                row["realtime_with_embed_cpu"] = duration / (cpu + embed_s)
                rows[name][label] = row
                print(f"  {label}: {row}", file=sys.stderr)
            whole[name] = index_whole_video(
                path, info.duration or args.seconds, runtimes, args.repeats
            )
            print(f"  whole indexing: {whole[name]}", file=sys.stderr)
    write_result(
        "video",
        {
            "clip": {
                "seconds": args.seconds,
                "fps": args.fps,
                "size": size,
                "cuts": footage.cuts,
                "encodings": clips,
            },
            "embed_ms_assumed": EMBED_MS,
            "strategies": rows,
            "whole_indexing": whole,
        },
        markdown(args, size, footage, clips, rows, whole),
    )


def markdown(args, size, footage: Footage, clips: dict, rows: dict, whole: dict) -> str:
    lines = [
        "# Video frame sampling",
        "",
        f"{args.seconds:g} s synthetic clip, {size[0]}x{size[1]} @ {args.fps} fps, "
        f"{len(footage.cuts)} hard cuts; 1 frame/s plus scene cuts; best of {args.repeats} "
        f"runs; the library's default is decode={DEFAULT_DECODE!r}. "
        f"'x real time' is video seconds per second of sampling alone: wall clock on a "
        f"shared 2-core machine, and CPU time (all threads of the process; what an idle core "
        f"would give a single-threaded strategy). 'with embed' adds {EMBED_MS:g} ms per sampled "
        f"frame (a ViT-B/32 image embed) to the wall / CPU time, run serially. 'pixel error' is "
        f"the mean |difference| (0-255) of the kept images from the exact decode of the same "
        f"frame.",
        "",
    ]
    for name, by_strategy in rows.items():
        clip = clips[name]
        lines += [
            f"## {name} encoding ({clip['options']}, {clip['bytes'] / 1e6:.1f} MB)",
            "",
            "| strategy | x real time (wall) | x real time (CPU) | frames | cuts found "
            "| false cuts | cut offset (frames) | t error mean / max (ms) | max gap (s) "
            "| pixel error vs exact | with embed (wall / CPU) |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for label, r in by_strategy.items():
            lines.append(
                f"| {label} | {r['video_s_per_wall_s']:.1f} | {r['video_s_per_cpu_s']:.1f} "
                f"| {r['frames']} | {r['cuts_found']}/{r['cuts_true']} | {r['false_cuts']} "
                f"| {r['cut_offset_frames']:.1f} | {r['t_error_mean_ms']:.0f} / "
                f"{r['t_error_max_ms']:.0f} | {r['max_gap_s']:.1f} "
                f"| {r['pixel_error_vs_exact']:.2f} "
                f"| {r['realtime_with_embed']:.1f} / {r['realtime_with_embed_cpu']:.1f} |"
            )
        costs = clip["per_frame_ms"]
        lines += [
            "",
            "Per-frame cost (ms): "
            + ", ".join(f"{key} {value:.2f}" for key, value in costs.items()),
            "",
        ]
    lines += [
        "## Whole video indexing with a ViT-B-32-shaped model (random weights)",
        "",
        "`SearchModel.index` on the clip with the library defaults (1 frame/s plus scene cuts): "
        f"probe, sample, embed, store. Best of {args.repeats} interleaved runs; the target is "
        "at least 5x real time.",
        "",
        "| encoding | runtime | x real time | frames | best wall s | median wall s |",
        "|---|---|---|---|---|---|",
    ]
    for name, by_runtime in whole.items():
        for runtime, r in by_runtime.items():
            lines.append(
                f"| {name} | {runtime} | {r['video_s_per_wall_s']:.1f} | {r['frames']} "
                f"| {r['best_wall_s']:.2f} | {r['median_wall_s']:.2f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()

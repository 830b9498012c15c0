"""Video probing and frame sampling on small generated clips, good and broken."""

from __future__ import annotations

import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from imgfinder.errors import ConfigError, MediaError

av = pytest.importorskip("av")

from imgfinder.media.video import (  # noqa: E402  (after the importorskip on purpose)
    SCENE_SIZE,
    FrameSampler,
    SceneDetector,
    VideoInfo,
    available_encoder,
    format_timestamp,
    probe_video,
    sample_frames,
    write_video,
)

SIZE = (160, 120)
CUT = 3.0  # background turns from blue to green here
EVENT = (3.0, 5.0)  # a red circle is on screen in [3.0, 5.0)
CIRCLE = (100, 20, 140, 60)
MARKER = 12  # yellow square in the top-left corner, to check orientation
BLUE, GREEN, RED, YELLOW = (20, 40, 200), (30, 170, 40), (230, 20, 20), (250, 230, 0)

pytestmark = pytest.mark.skipif(
    available_encoder("libx264", "mpeg4") is None, reason="no video encoder in this PyAV"
)


def scene(t: float) -> Image.Image:
    """Blue scene, hard cut to green at CUT; a white square moves; red circle during EVENT."""
    image = Image.new("RGB", SIZE, BLUE if t < CUT else GREEN)
    draw = ImageDraw.Draw(image)
    x = int(20 + 15 * t)
    draw.rectangle((x, 80, x + 12, 92), fill=(255, 255, 255))
    if EVENT[0] <= t < EVENT[1]:
        draw.ellipse(CIRCLE, fill=RED)
    draw.rectangle((0, 0, MARKER, MARKER), fill=YELLOW)
    return image


def is_red(rgb: tuple[int, int, int]) -> bool:
    r, g, b = rgb
    return r > 150 and g < 90 and b < 90


def is_yellow(rgb: tuple[int, int, int]) -> bool:
    r, g, b = rgb
    return r > 180 and g > 160 and b < 90


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="module")
def clip(clips: Path) -> Path:
    """7 s, 10 fps, 160x120 H.264 (or MPEG-4) in MP4, with a cut and an event."""
    return write_video(clips / "scene.mp4", scene, fps=10, duration=7, size=SIZE)


def sample(path: Path, **kwargs) -> list:
    return list(sample_frames(path, **kwargs))


def test_format_timestamp() -> None:
    assert format_timestamp(0) == "00:00:00"
    assert format_timestamp(3725) == "01:02:05"


def test_probe_reads_header(clip: Path) -> None:
    info = probe_video(clip)
    assert isinstance(info, VideoInfo)
    assert info.duration == pytest.approx(7.0, abs=0.15)
    assert info.fps == pytest.approx(10.0)
    assert (info.width, info.height, info.rotation) == (160, 120, 0)
    assert info.display_size == SIZE
    assert info.frame_count == 70
    assert info.codec in {"h264", "mpeg4"}
    assert "mp4" in info.container


def test_one_frame_per_second_on_the_grid(clip: Path) -> None:
    sampler = sample_frames(clip, scene_cuts=False, decode="all")
    assert isinstance(sampler, Iterator)
    frames = list(sampler)
    assert [f.t for f in frames] == pytest.approx([0, 1, 2, 3, 4, 5, 6], abs=0.01)
    assert {f.reason for f in frames} == {"interval"}
    assert all(f.image.mode == "RGB" and f.image.size == SIZE for f in frames)  # no upscale
    assert not sampler.truncated and sampler.issues == []
    assert sampler.decoded_frames == 70


def test_scene_cut_is_found_once(clip: Path) -> None:
    frames = sample(clip)
    cuts = [f for f in frames if f.reason == "scene"]
    assert len(cuts) == 1
    assert abs(cuts[0].t - CUT) <= 0.2
    # the cut lands on the 3.0 grid point: one frame, not two
    assert [round(f.t) for f in frames] == [0, 1, 2, 3, 4, 5, 6]
    only_cuts = sample(clip, every=None)
    assert [f.reason for f in only_cuts] == ["scene", "scene"]  # first shot, then the cut
    assert only_cuts[1].t == pytest.approx(CUT, abs=0.2)


def test_scene_detector_ignores_noise_and_bounds_flashes() -> None:
    rng = np.random.default_rng(3)
    detector = SceneDetector(min_gap=0.5)
    dark = np.full(SCENE_SIZE[::-1], 40, np.uint8)
    cuts = []
    for i in range(60):
        t = i / 30
        luma = dark + rng.integers(0, 6, dark.shape, dtype=np.uint8)
        if i == 20:  # a one-frame flash: at most one cut, not two
            luma = np.full_like(dark, 230)
        if i >= 45:  # a real cut to a bright shot
            luma = np.full_like(dark, 180)
        if detector.update(t, luma):
            cuts.append(i)
    assert cuts == [20, 45]


def test_steady_motion_is_not_a_cut(clips: Path) -> None:
    rng = np.random.default_rng(1)

    def panning(t: float) -> np.ndarray:
        base = np.tile(np.linspace(0, 255, 400, dtype=np.uint8), (SIZE[1], 1))
        shift = int(40 * t)
        gray = base[:, shift : shift + SIZE[0]].astype(np.int16)
        gray += rng.integers(-12, 12, gray.shape, dtype=np.int16)  # sensor noise
        return np.repeat(np.clip(gray, 0, 255).astype(np.uint8)[..., None], 3, axis=2)

    path = write_video(clips / "pan.mp4", panning, fps=10, duration=5, size=SIZE)
    assert [f.reason for f in sample(path)] == ["interval"] * 5


def test_event_is_visible_only_while_it_happens(clip: Path) -> None:
    frames = sample(clip, every=0.5)
    assert len(frames) == 14
    cx, cy = (CIRCLE[0] + CIRCLE[2]) // 2, (CIRCLE[1] + CIRCLE[3]) // 2
    for frame in frames:
        inside = EVENT[0] <= frame.t < EVENT[1]
        assert is_red(frame.image.getpixel((cx, cy))) == inside, frame.t


def test_frames_are_scaled_by_the_decoder_to_target_size(clips: Path) -> None:
    path = write_video(
        clips / "wide.mp4",
        lambda t: scene(t).resize((640, 360)),
        fps=5,
        duration=2,
        size=(640, 360),
    )
    frames = sample(path, target_size=224, thumb_size=96)
    assert [f.image.size for f in frames] == [(399, 224), (399, 224)]
    assert all(max(f.thumb.size) == 96 for f in frames)
    assert is_yellow(frames[0].image.getpixel((2, 2)))
    big_thumb = sample(path, target_size=64, thumb_size=320)[0]
    assert big_thumb.image.size == (114, 64)
    assert max(big_thumb.thumb.size) == 320
    full = sample(path, target_size=None, scene_cuts=False)[0]
    assert full.image.size == (640, 360)


@pytest.mark.parametrize(
    ("rotation", "corner"),
    [(90, "top-right"), (270, "bottom-left"), (180, "bottom-right")],
)
def test_rotated_phone_video_comes_out_upright(clips: Path, rotation: int, corner: str) -> None:
    path = write_video(
        clips / f"rot{rotation}.mp4", scene, fps=10, duration=1, size=SIZE, rotation=rotation
    )
    info = probe_video(path)
    assert info.rotation == rotation
    frame = sample(path)[0]
    want = (120, 160) if rotation in (90, 270) else SIZE
    assert info.display_size == want == frame.image.size
    w, h = frame.image.size
    xy = {"top-right": (w - 3, 2), "bottom-left": (2, h - 3), "bottom-right": (w - 3, h - 3)}
    assert is_yellow(frame.image.getpixel(xy[corner]))


def test_rotation_agrees_with_opencv(clips: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    path = write_video(clips / "rot_cv.mp4", scene, fps=10, duration=1, size=SIZE, rotation=90)
    capture = cv2.VideoCapture(str(path))  # OpenCV applies the display matrix by default
    ok, bgr = capture.read()
    capture.release()
    assert ok
    ours = np.asarray(sample(path)[0].image).astype(int)
    theirs = bgr[:, :, ::-1].astype(int)
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).mean() < 6


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_variable_frame_rate_uses_each_frames_own_time(clips: Path, ext: str) -> None:
    times = [0.0, 0.05, 0.1, 0.5, 0.52, 1.0, 1.31, 2.2, 2.21, 2.22, 2.9, 3.7, 4.0, 4.05]
    level = {t: 20 + 15 * i for i, t in enumerate(times)}  # each frame shows its own index

    def frame_at(t: float) -> Image.Image:
        return Image.new("RGB", SIZE, (level[t],) * 3)

    path = write_video(clips / f"vfr.{ext}", frame_at, fps=30, times=times, size=SIZE)
    frames = sample(path, scene_cuts=False, decode="all")
    got = [round(f.t, 3) for f in frames]
    assert got == [0.0, 1.0, 2.2, 3.7, 4.0]
    for frame in frames:
        brightness = np.asarray(frame.image).mean()
        assert brightness == pytest.approx(level[round(frame.t, 3)], abs=3)


def _audio_only(path: Path, video_stream: bool = False, cover: bool = False) -> Path:
    """An AAC track; video_stream adds an H.264 stream that never gets a frame, cover adds
    album art (a one-picture MJPEG stream marked attached_pic, as music files carry)."""
    with av.open(str(path), "w") as container:
        if video_stream:
            video = container.add_stream("libx264", rate=10)
            video.width, video.height, video.pix_fmt = 160, 120, "yuv420p"
        audio = container.add_stream("aac", rate=44100, layout="mono")
        if cover:
            art = container.add_stream("mjpeg", rate=1)
            art.width, art.height, art.pix_fmt = 64, 64, "yuvj420p"
            art.disposition = av.stream.Disposition.attached_pic
            picture = av.VideoFrame.from_image(Image.new("RGB", (64, 64), RED))
            picture.pts = 0
            container.mux(art.encode(picture))
            container.mux(art.encode(None))
        for i in range(20):
            wave = 0.1 * np.sin(np.arange(1024, dtype=np.float32) * 0.05 + i)
            frame = av.AudioFrame.from_ndarray(wave[None, :], format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 44100, i * 1024, Fraction(1, 44100)
            container.mux(audio.encode(frame))
        container.mux(audio.encode(None))
        if video_stream:
            container.mux(video.encode(None))
    return path


BAD = {
    "zero.mp4": "empty file",
    "random.mp4": "not a video container",
    "truncated.mp4": "truncated",
    "audio.m4a": "no video stream",
    "cover_art.mp4": "no video stream",
    "noframes.mkv": "no decodable video frames",
    "missing.mp4": "file not found",
}


@pytest.fixture(scope="module")
def bad_files(clips: Path, clip: Path) -> dict[str, Path]:
    bad = clips / "bad"
    bad.mkdir()
    (bad / "zero.mp4").write_bytes(b"")
    (bad / "random.mp4").write_bytes(np.random.default_rng(0).bytes(40_000))
    data = clip.read_bytes()  # index (moov) at the end: the first half cannot even open
    (bad / "truncated.mp4").write_bytes(data[: len(data) // 2])
    _audio_only(bad / "audio.m4a")
    _audio_only(bad / "cover_art.mp4", cover=True)
    _audio_only(bad / "noframes.mkv", video_stream=True)
    return {name: bad / name for name in BAD}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_raises_a_clear_media_error(bad_files: dict[str, Path], name: str) -> None:
    start = time.monotonic()
    with pytest.raises(MediaError, match=BAD[name]) as probe_error:
        probe_video(bad_files[name])
    assert name in str(probe_error.value)
    with pytest.raises(MediaError, match=BAD[name]):
        sample(bad_files[name])
    assert time.monotonic() - start < 5


def test_truncated_file_yields_what_it_can_then_says_so(
    clips: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_video(
        clips / "fast.mp4",
        scene,
        fps=10,
        duration=7,
        size=SIZE,
        container_options={"movflags": "faststart"},  # index first, as web videos are
    )
    data = path.read_bytes()
    cut = clips / "fast_half.mp4"
    cut.write_bytes(data[: len(data) // 2])
    sampler = sample_frames(cut)
    frames = list(sampler)
    assert 1 <= len(frames) < 7
    assert [f.t for f in frames] == sorted(f.t for f in frames)
    assert sampler.truncated
    assert any("truncated" in issue for issue in sampler.issues)
    assert "truncated" in caplog.text


@pytest.mark.parametrize("ext", ["mkv", "ts"])
def test_damaged_bytes_mid_stream_do_not_stop_sampling(clips: Path, ext: str) -> None:
    rng = np.random.default_rng(2)

    def textured(t: float) -> np.ndarray:
        picture = np.asarray(scene(t)).copy()
        picture[::2, ::2] = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
        return picture

    path = write_video(clips / f"textured.{ext}", textured, fps=10, duration=5, size=SIZE)
    data = bytearray(path.read_bytes())
    for k in (2, 3, 4):
        at = len(data) * k // 6
        data[at : at + 300] = rng.bytes(300)
    damaged = clips / f"damaged.{ext}"
    damaged.write_bytes(bytes(data))
    start = time.monotonic()
    sampler = sample_frames(damaged)
    frames = list(sampler)
    assert time.monotonic() - start < 5
    assert len(frames) >= 2
    assert frames[0].t == 0.0


def test_time_limit_stops_a_slow_file(clips: Path) -> None:
    path = write_video(
        clips / "long.mp4",
        lambda t: scene(t).resize((320, 240)),
        fps=30,
        duration=8,
        size=(320, 240),
    )
    sampler = sample_frames(path, time_limit=0.001, time_per_second=0)
    start = time.monotonic()
    with pytest.raises(MediaError, match="time limit"):
        for _ in sampler:
            pass
    assert time.monotonic() - start < 1.0
    # the caller's own time between frames does not count against the budget
    slow_caller = sample_frames(path, time_limit=5.0, time_per_second=0)
    count = 0
    for _ in slow_caller:
        time.sleep(0.02)
        count += 1
    assert count == 8
    assert slow_caller.elapsed < 5.0


CONTAINERS = {
    "mp4": ("libx264", "mpeg4"),
    "mkv": ("libx264", "mpeg4"),
    "mov": ("libx264", "mpeg4"),
    "avi": ("mpeg4", "mjpeg"),
    "webm": ("libvpx", "libvpx-vp9"),
    "m4v": ("libx264", "mpeg4"),
}


@pytest.mark.parametrize("ext", list(CONTAINERS))
def test_common_containers_are_readable(clips: Path, ext: str) -> None:
    codec = available_encoder(*CONTAINERS[ext])
    if codec is None:
        pytest.skip(f"no encoder for .{ext}")
    path = write_video(
        clips / f"fmt.{ext}", scene, fps=10, duration=4, size=SIZE, codec=codec, audio=True
    )
    info = probe_video(path)
    assert info.duration == pytest.approx(4.0, abs=0.2)
    assert (info.width, info.height) == SIZE
    frames = sample(path)
    assert [f.t for f in frames] == pytest.approx([0.0, 1.0, 2.0, 3.0], abs=0.25)
    assert frames[3].reason == "scene"


def test_cheaper_decode_modes_still_sample(clip: Path) -> None:
    default = sample(clip)  # decode="reference": B-frames skipped, t is still each frame's own
    assert len(default) == 7
    assert all(abs(f.t - round(f.t)) <= 0.25 for f in default)
    assert sum(f.reason == "scene" and abs(f.t - CUT) <= 0.2 for f in default) == 1
    fast = sample(clip, decode="fast", threads=0)
    assert [f.t for f in fast] == pytest.approx([0, 1, 2, 3, 4, 5, 6], abs=0.01)
    keyframes = sample(clip, decode="keyframes")
    assert 1 <= len(keyframes) <= 7
    assert keyframes[0].t == 0.0


def test_sparse_reference_frames_fall_back_to_full_decoding(clips: Path) -> None:
    texture = np.random.default_rng(4).integers(0, 255, (120, 400, 3), dtype=np.uint8)

    def panning(t: float) -> np.ndarray:
        return np.ascontiguousarray(texture[:, int(t * 20) : int(t * 20) + 160])

    # 16 B-frames between reference frames: 1.7 s apart at 10 fps
    options = {"x264-params": "bframes=16:b-adapt=0:b-pyramid=none:scenecut=0"}
    if available_encoder("libx264") is None:
        pytest.skip("needs libx264 for B-frames")
    path = write_video(
        clips / "sparse_refs.mp4", panning, fps=10, duration=6, size=SIZE, codec_options=options
    )
    times = [f.t for f in sample(path, every=0.5, scene_cuts=False)]
    assert len(times) >= 10  # not one per 1.7 s
    assert max(np.diff(times)) <= 1.1


def test_close_early_releases_the_file(clip: Path) -> None:
    with sample_frames(clip) as sampler:
        first = next(sampler)
    assert first.t == 0.0
    assert isinstance(sampler, FrameSampler)
    with pytest.raises(StopIteration):
        next(sampler)


@pytest.mark.parametrize(
    "kwargs",
    [{"every": 0}, {"every": None, "scene_cuts": False}, {"target_size": 0}, {"decode": "x"}],
)
def test_bad_arguments_are_config_errors(clip: Path, kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        sample_frames(clip, **kwargs)


def test_write_video_checks_frame_size(clips: Path) -> None:
    with pytest.raises(ValueError, match="expected"):
        write_video(clips / "wrong.mp4", lambda t: Image.new("RGB", (10, 10)), size=SIZE)
    assert not (clips / "wrong.mp4").exists()

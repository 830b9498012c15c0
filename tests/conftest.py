"""Offline test fixtures: a tiny colour embedder with real (if simple) semantics, media makers."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import zlib
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgfinder.embedders.base import Embedder, l2_normalize

SMALL_DEMO_IMAGES = 300


#: the data folder of this test run, removed when it ends
_DATA_DIR = tempfile.mkdtemp(prefix="imgfinder-tests-")


def pytest_configure(config: pytest.Config) -> None:
    """Collections named in tests live in a data folder of their own, never the user's."""
    os.environ["IMGFINDER_DATA_DIR"] = _DATA_DIR


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_DATA_DIR, ignore_errors=True)


PALETTE = {
    "red": (220, 30, 30),
    "green": (30, 180, 60),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 40),
    "white": (250, 250, 250),
    "black": (10, 10, 10),
    "purple": (140, 40, 170),
    "orange": (250, 140, 20),
}
WORDS = {
    "red": "red",
    "красный": "red",
    "красная": "red",
    "green": "green",
    "зелёный": "green",
    "зеленый": "green",
    "blue": "blue",
    "синий": "blue",
    "yellow": "yellow",
    "жёлтый": "yellow",
    "white": "white",
    "белый": "white",
    "black": "black",
    "чёрный": "black",
    "purple": "purple",
    "orange": "orange",
}
NAMES = list(PALETTE)


class ColorEmbedder(Embedder):
    """Embeds an image as its histogram over a small palette and a text by its colour words.

    Cheap and deterministic, yet a "red" query really finds red images, so tests measure
    retrieval rather than array shapes. Counts embedded images to check incrementality.
    """

    image_size = 32

    def __init__(self, dim: int = 24, salt: str = "") -> None:
        self._dim = dim
        self.salt = salt
        self.images_embedded = 0
        self.texts_embedded = 0
        self._centres = np.asarray(list(PALETTE.values()), dtype=np.float32) / 255.0

    @property
    def key(self) -> str:
        return f"color-{self._dim}{self.salt}"

    @property
    def dim(self) -> int:
        return self._dim

    def embed_prepared(self, batch: np.ndarray) -> np.ndarray:
        self.images_embedded += len(batch)
        mean = np.asarray(self.mean, dtype=np.float32)[None, :, None, None]
        std = np.asarray(self.std, dtype=np.float32)[None, :, None, None]
        pixels = (batch * std + mean).transpose(0, 2, 3, 1).reshape(len(batch), -1, 3)
        distance = ((pixels[:, :, None, :] - self._centres[None, None]) ** 2).sum(-1)
        nearest = distance.argmin(-1)
        out = np.zeros((len(batch), self._dim), dtype=np.float32)
        for column in range(len(PALETTE)):
            out[:, column] = (nearest == column).mean(1)
        out[:, len(PALETTE) :] = 0.01
        # quadrant colours relative to the whole image: tells same-colour images apart
        grid = pixels.reshape(len(batch), 2, 16, 2, 16, 3).mean(axis=(2, 4)).reshape(len(batch), -1)
        centred = grid - np.tile(pixels.mean(1), 4)
        out[:, len(PALETTE) : len(PALETTE) + 12] = 2.0 * centred
        return l2_normalize(out)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        self.texts_embedded += len(texts)
        out = np.full((len(texts), self._dim), 0.01, dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                if word in WORDS:
                    out[row, NAMES.index(WORDS[word])] += 1.0
        return l2_normalize(out)


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny valid PNG whose header claims a huge size: a classic decompression bomb."""
    buffer = io.BytesIO()
    Image.new("L", (8, 8)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    body = b"IHDR" + struct.pack(">II", width, height) + bytes(data[24:29])
    data[12:29] = body
    data[29:33] = struct.pack(">I", zlib.crc32(body))
    return bytes(data)


def free_port() -> int:
    """A loopback port nobody listens on right now, for a server a test starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen, seconds: float = 60) -> None:
    """Poll `url` until it answers; fail with the server's stderr if it exits first."""
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited {process.returncode}: {process.stderr.read().decode()}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer in {seconds} s")


def fake_hub(monkeypatch: pytest.MonkeyPatch, delay: float = 0.0) -> None:
    """The Hugging Face hub replaced by a fake that writes each file it is asked for, taking
    `delay` seconds per file (long enough for a progress display to see it under way)."""
    import time

    import huggingface_hub

    from imgfinder.embedders import registry

    def fake_download(repo_id: str, filename: str, local_dir: Path | None = None) -> str:
        time.sleep(delay)
        target = Path(str(local_dir)) / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"{}")
        return str(target)

    monkeypatch.setattr(registry, "check_online", lambda: None)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)


@pytest.fixture
def embedder() -> ColorEmbedder:
    return ColorEmbedder()


def make_image(
    path: Path,
    color: str | tuple[int, int, int] = "red",
    size: tuple[int, int] = (64, 48),
    *,
    seed: int = 0,
    fmt: str | None = None,
) -> Path:
    """A mostly single-colour image with a little noise, so each file has unique bytes."""
    rgb = PALETTE[color] if isinstance(color, str) else color
    rng = np.random.default_rng(seed + int(hashlib.md5(os.fsencode(path)).hexdigest()[:6], 16))
    base = np.empty((size[1], size[0], 3), dtype=np.int16)
    base[:] = rgb
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0 : size[1], 0 : size[0]]
    ramp = (np.cos(angle) * xs / size[0] + np.sin(angle) * ys / size[1]) * 40 - 20
    base += ramp.astype(np.int16)[..., None]
    noise = rng.integers(-8, 9, size=base.shape)
    array = np.clip(base + noise, 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format=fmt)
    return path


@pytest.fixture
def photo_folder(tmp_path: Path) -> Path:
    """A small album: 4 colours × 3 images, nested folders, mixed formats."""
    root = tmp_path / "album"
    formats = ["jpg", "png", "webp"]
    for color in ("red", "green", "blue", "yellow"):
        for number, ext in enumerate(formats):
            make_image(root / color[0] / f"{color}_{number}.{ext}", color, seed=number)
    return root


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(collection, media folder): the demo collection with 300 images, indexed once per run
    with the bundled demo model through its default runtime."""
    from imgfinder.demo_collection import DEMO_VIDEOS, build_demo

    base = tmp_path_factory.mktemp("small-demo")
    collection, folder = base / "indexes" / "demo", base / "demo_data"
    report = build_demo(folder, collection, images=SMALL_DEMO_IMAGES)
    assert report.indexed == SMALL_DEMO_IMAGES + len(DEMO_VIDEOS), report.summary()
    assert not report.skipped, report.summary()
    return collection, folder


#: the seed of the fresh demo world the acceptance tests search (never the training seed)
FRESH_WORLD_SEED = 20261201
FRESH_SCENES = 1200


@pytest.fixture(scope="session")
def fresh_demo(tmp_path_factory: pytest.TempPathFactory):
    """(SearchModel, scenes, {path: scene index}): a fresh demo world of 1,200 scenes indexed
    by the demo model through the real pipeline, once per run; scenes in catalog order."""
    from imgfinder.demo import world
    from imgfinder.search import SearchModel

    base = tmp_path_factory.mktemp("fresh-demo")
    labels = world.write_demo_folder(base / "media", FRESH_SCENES, FRESH_WORLD_SEED, size=128)
    rows = world.read_labels(labels)
    model = SearchModel(base / "collection", "demo")
    report = model.index([base / "media"])
    assert report.summary()["indexed"] == FRESH_SCENES
    scenes = world.scenes_from_labels(rows)
    by_path = {str(base / "media" / row["path"]): i for i, row in enumerate(rows)}
    yield model, scenes, by_path
    model.close()


@pytest.fixture(scope="module")
def album(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six small images in three colours, for end-to-end runs of real (random) models."""
    folder = tmp_path_factory.mktemp("album")
    for color in ("red", "green", "blue"):
        for number in range(2):
            make_image(folder / f"{color}_{number}.png", color, seed=number, size=(48, 40))
    return folder


def cli_main(monkeypatch: pytest.MonkeyPatch, capsys, *args: str) -> tuple[int, str, str]:
    """`imgfinder ARGS` through its entry point: exit code, stdout and stderr."""
    import sys

    from imgfinder import cli

    monkeypatch.setattr(sys, "argv", ["imgfinder", *args])
    try:
        cli.main()
        code = 0
    except SystemExit as exited:
        code = int(exited.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def with_exif_date(path: Path, when: str) -> Path:
    """Rewrite an image with an EXIF DateTimeOriginal of `when` ("YYYY:MM:DD HH:MM:SS")."""
    image = Image.open(path)
    exif = Image.Exif()
    exif.get_ifd(0x8769)[36867] = when
    image.save(path, exif=exif)
    return path


def dated_album(root: Path) -> Path:
    """60 images of four colours in `many/`, 3 red ones in `few/`; the odd-numbered ones of
    `many/` carry an EXIF date in July 2019, all of `many/` were modified in March 2021 and
    `few/` on 10 May 2022."""
    for number in range(60):
        path = make_image(root / "many" / f"m{number:02d}.jpg", NAMES[number % 4], seed=number)
        if number % 2:
            with_exif_date(path, f"2019:07:{1 + number % 28:02d} 12:00:00")
        _set_mtime(path, datetime(2021, 3, 1 + number % 28, 9, 0))
    for number in range(3):
        path = make_image(root / "few" / f"f{number}.jpg", "red", seed=100 + number)
        _set_mtime(path, datetime(2022, 5, 10, 9, 0))
    return root


def _set_mtime(path: Path, when: datetime) -> None:
    stamp = time.mktime(when.timetuple())
    os.utime(path, (stamp, stamp))


def grid_tiles(at) -> list[dict]:
    """The page's result tiles as it sent them to the browser (an AppTest), in page order."""
    grids = [e for e in at.main.get("bidi_component") if e.proto.component_name.endswith("grid")]
    return json.loads(grids[0].proto.json)["tiles"] if grids else []


def grid_names(at) -> list[str]:
    """The whole names of the page's result tiles (their captions are cut to fit)."""
    return [tile["full_name"] for tile in grid_tiles(at)]


def page_scores(at) -> list[tuple[str, float]]:
    """(whole name, score) of each result tile of the page, in page order."""
    return [(tile["full_name"], tile["score"]) for tile in grid_tiles(at)]


def open_result(at, index: int = 0) -> None:
    """Open the viewer on the `index`th result, as a click on its tile does in a browser
    (AppTest cannot click inside a component; the browser walks click the tiles)."""
    at.session_state["viewer"] = {"index": index, "moment": None}
    at.run()
    assert not at.exception, at.exception

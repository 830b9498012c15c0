"""The crash and concurrency suites make their own cases: media drawn on the spot, a clean
reference run, real `imgfinder index` processes killed at chosen moments, and a fingerprint that
compares collections by what they hold (paths, contents, frame times, exact float16 vectors).

Shared by tests/test_crash.py, tests/test_concurrency.py and bench/soak.py. Run as a script it
is their helper process (`python tests/crashkit.py write|read ...`), so that a writer or a
reader is another process, as it is for people.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import closing, suppress
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from imgfinder.store.collection import MANIFEST, Collection  # noqa: E402
from imgfinder.store.lock import WriterLock  # noqa: E402

#: images per model call in the runs under test: many small commits, many moments between them
BATCH = 4
#: how often a watcher looks at a collection while a run works on it
POLL = 0.002
PICTURE = (64, 48)
CLIP = (64, 48)
WAITING = "waiting for another run"
BUSY = "being indexed by another process"


# -- media ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Media:
    """A generated folder: `a` and `b` hold distinct images and a video each, `shared` holds
    copies of images from both, and `a` holds a copy of its own first image too."""

    root: Path
    images: tuple[Path, ...]
    copies: tuple[Path, ...]
    videos: tuple[Path, ...]

    @property
    def a(self) -> Path:
        return self.root / "a"

    @property
    def b(self) -> Path:
        return self.root / "b"

    @property
    def shared(self) -> Path:
        return self.root / "shared"

    @property
    def files(self) -> int:
        return len(self.images) + len(self.copies) + len(self.videos)


def picture(seed: int, size: tuple[int, int] = PICTURE) -> Image.Image:
    """Random colour blocks and a disc: distinct content for every seed, yet cheap to embed."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(3, 4, 3), dtype=np.uint8)
    image = Image.fromarray(blocks).resize(size, Image.Resampling.NEAREST)
    x, y = (int(v) for v in rng.integers(0, size))
    radius = int(rng.integers(4, 16))
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    ImageDraw.Draw(image).ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)
    return image


def clip_frame(seed: int) -> Callable[[float], Image.Image]:
    """Frames of a small clip: a background that cuts to another colour halfway, a moving box."""
    rng = np.random.default_rng(seed)
    first, second, box = (tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in range(3))

    def frame(t: float) -> Image.Image:
        image = Image.new("RGB", CLIP, first if t < 2.0 else second)
        x = int(4 + 12 * t)
        ImageDraw.Draw(image).rectangle((x, 16, x + 10, 28), fill=box)
        return image

    return frame


def make_media(
    root: Path, *, images: int = 48, copies: int = 4, videos: int = 2, seed: int = 0
) -> Media:
    """Write `images` distinct PNGs (half in a/, half in b/), `copies` identical copies of some
    of them and `videos` 4-second clips; the same arguments always give the same bytes."""
    from imgfinder.media.video import write_video

    made: list[Path] = []
    for number in range(images):
        folder = root / ("a" if number < (images + 1) // 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"img_{number:03d}.png"
        picture(seed * 10_000 + number).save(path)
        made.append(path)
    duplicates: list[Path] = []
    for number in range(copies):
        source = made[(number * 7) % len(made)] if number else made[0]
        target = root / "a" / "copy_of_first.png" if number == 0 else root / "shared"
        if number:
            target = target / f"copy_{number:02d}_{source.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        duplicates.append(target)
    clips: list[Path] = []
    for number in range(videos):
        folder = root / ("a" if number % 2 == 0 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"clip_{number}.mp4"
        clips.append(write_video(path, clip_frame(seed * 10_000 + 5_000 + number), fps=8,
                                 duration=4, size=CLIP))
    return Media(root, tuple(made), tuple(duplicates), tuple(clips))


# -- running imgfinder ----------------------------------------------------------------------


def index_command(paths: Sequence[Path], collection: Path, *extra: str) -> list[str]:
    """A real `imgfinder index` of `paths`, printing its summary as JSON."""
    return [
        sys.executable,
        "-m",
        "imgfinder",
        "index",
        *map(str, paths),
        "-c",
        str(collection),
        "--json",
        "--batch-size",
        str(BATCH),
        *extra,
    ]


def helper_command(*args: str) -> list[str]:
    """This module as a helper process (`write` or `read`, see `main`)."""
    return [sys.executable, str(Path(__file__).resolve()), *args]


def run_index(
    paths: Sequence[Path], collection: Path, *extra: str, timeout: float = 120.0
) -> dict:
    """Index to completion and return the run's summary; a failed run raises with its stderr."""
    done = subprocess.run(
        index_command(paths, collection, *extra),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"imgfinder index exited {done.returncode}: {done.stderr.strip()}")
    return json.loads(done.stdout)


def wait_for_text(path: Path, text: str, process: subprocess.Popen, timeout: float) -> bool:
    """True once `text` shows in the file `process` writes its stderr to; False if the process
    ends or `timeout` passes first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and text in path.read_text(errors="replace"):
            return True
        if process.poll() is not None:
            return text in path.read_text(errors="replace")
        time.sleep(0.01)
    return False


def stop(process: subprocess.Popen) -> None:
    """Make sure a helper process is gone (resumed first, in case it was paused)."""
    if process.poll() is None:
        with suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGCONT)
            process.kill()
    process.wait(timeout=30)


# -- fingerprints ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Fingerprint:
    """What a collection holds, comparable across collections: equal fingerprints mean the same
    files, contents, items and exact vector bytes, and a sound catalog (`problems` empty)."""

    #: (path, content hash, item time) of every live item of every file; time None for images
    items: frozenset[tuple[str, str, float | None]]
    #: (content hash, item time) -> the item's float16 vector, byte for byte
    vectors: dict[tuple[str, float | None], bytes]
    #: content hash -> names of its frame thumbnails
    thumbs: dict[str, frozenset[str]]
    #: files left behind by an interrupted atomic write, relative to the collection
    strays: frozenset[str]
    #: integrity, vector-file and bookkeeping problems; empty when the collection is sound
    problems: tuple[str, ...]
    #: vector rows no live item refers to: work a killed run did not get to commit
    spare_rows: int = field(default=0, compare=False)

    @property
    def paths(self) -> set[str]:
        return {path for path, _, _ in self.items}

    @property
    def contents(self) -> set[str]:
        return {content for _, content, _ in self.items}

    def part_of(self, whole: Fingerprint) -> list[str]:
        """Why this (interrupted) state is not a sound part of `whole`; empty when it is."""
        reasons = list(self.problems)
        reasons += [f"unexpected item {item}" for item in sorted(self.items - whole.items, key=str)]
        for key, vector in self.vectors.items():
            if key in whole.vectors and whole.vectors[key] != vector:
                reasons.append(f"vector of {key} differs from the clean run's")
        for content, names in self.thumbs.items():
            extra = names - whole.thumbs.get(content, frozenset())
            if extra:
                reasons.append(f"unexpected thumbnails of {content}: {sorted(extra)}")
        return reasons

    def differences(self, other: Fingerprint) -> list[str]:
        """Readable reasons why two fingerprints differ (for assertion messages)."""
        reasons = [f"problem: {p}" for p in self.problems + other.problems]
        for name, mine, theirs in (
            ("items", self.items, other.items),
            ("vectors", set(self.vectors), set(other.vectors)),
            ("thumbnail folders", set(self.thumbs), set(other.thumbs)),
            ("strays", self.strays, other.strays),
        ):
            if mine != theirs:
                only = sorted(mine - theirs, key=str)[:5]
                missing = sorted(theirs - mine, key=str)[:5]
                reasons.append(f"{name}: only here {only}, only there {missing}")
        reasons += [
            f"vector of {key} differs"
            for key in self.vectors.keys() & other.vectors.keys()
            if self.vectors[key] != other.vectors[key]
        ]
        reasons += [
            f"thumbnails of {content} differ"
            for content in self.thumbs.keys() & other.thumbs.keys()
            if self.thumbs[content] != other.thumbs[content]
        ]
        return reasons


def collection_fingerprint(directory: Path) -> Fingerprint:
    """Open the collection with the library (as a user would after a crash) and read all it
    holds in one consistent catalog snapshot."""
    collection = Collection(directory, create=False)
    try:
        catalog = collection.catalog
        problems = catalog.integrity_problems() + collection.vector_problems()
        key = collection.manifest.get("embedder_key")
        vectors: dict[tuple[str, float | None], bytes] = {}
        times: dict[str, list[float | None]] = {}
        spare = 0
        if key is not None:
            store = collection.vectors(key, int(collection.manifest["embedders"][key]["dim"]))
            snapshot = catalog.snapshot(key)
            owners: dict[int, list[int]] = {}
            for item_id, row in snapshot.rows.items():
                owners.setdefault(row, []).append(item_id)
            problems += [
                f"vector row {row} is shared by items {ids}"
                for row, ids in owners.items()
                if len(ids) > 1
            ]
            spare = len(store) - len(owners)
            ids = list(snapshot.rows)
            rows = np.asarray([snapshot.rows[i] for i in ids], dtype=np.int64)
            data = store.read(rows).astype(np.float16) if ids else []
            found = catalog.items(ids)
            for item_id, vector in zip(ids, data, strict=True):
                item = found[item_id]
                if (item.content_hash, item.t) in vectors:
                    problems.append(f"two items of {item.content_hash} at t={item.t}")
                vectors[(item.content_hash, item.t)] = vector.tobytes()
                times.setdefault(item.content_hash, []).append(item.t)
        items: set[tuple[str, str, float | None]] = set()
        for path in catalog.all_paths():
            record = catalog.file_record(path)
            assert record is not None
            if not times.get(record.content_hash):
                problems.append(f"{path} is in the catalog without a vector")
            items.update((path, record.content_hash, t) for t in times.get(record.content_hash, ()))
        return Fingerprint(
            items=frozenset(items),
            vectors=vectors,
            thumbs=_thumbs(collection.thumbs_dir()),
            strays=frozenset(
                str(path.relative_to(directory)) for path in directory.rglob(".*.tmp")
            ),
            problems=tuple(problems),
            spare_rows=spare,
        )
    finally:
        collection.close()


def _thumbs(directory: Path) -> dict[str, frozenset[str]]:
    if not directory.is_dir():
        return {}
    return {
        folder.name: frozenset(entry.name for entry in folder.iterdir())
        for folder in directory.iterdir()
        if folder.is_dir()
    }


# -- kills at chosen moments ----------------------------------------------------------------

#: where in a run a kill lands: before any commit, between image batches (often after the
#: vectors are fsynced and before the catalog commits them), right after a commit, while a
#: video is decoded and embedded, and while the finished run saves its index
PHASES = ("start-up", "images", "commit", "videos", "saving")


@dataclass(frozen=True)
class Moment:
    """Kill once `phase` is reached (for "images" and "commit": `after` more vector rows or
    commits than the run started with), `delay` seconds later."""

    phase: str
    after: int = 0
    delay: float = 0.0


@dataclass(frozen=True)
class Kill:
    moment: Moment
    killed: bool
    seconds: float


@dataclass(frozen=True)
class Watch:
    """What a watcher sees of a run from outside: vector rows, generation, newest files."""

    rows: int
    generation: int
    thumbs_ns: int
    index_ns: int


def watch(collection: Path) -> Watch:
    """Read a collection's progress without opening it for writing (no migrations, no locks)."""
    return Watch(
        rows=_vector_rows(collection),
        generation=_generation(collection / "catalog.sqlite"),
        thumbs_ns=_newest(collection / "thumbs"),
        index_ns=_newest(collection / "index"),
    )


def _vector_rows(collection: Path) -> int:
    try:
        manifest = json.loads((collection / MANIFEST).read_text())
        dims = {int(entry["dim"]) for entry in manifest["embedders"].values()}
    except (OSError, ValueError, KeyError):
        return 0
    sizes = [path.stat().st_size for path in (collection / "vectors").glob("*.f16")]
    return sum(sizes) // (2 * min(dims)) if dims and sizes else 0


def _generation(catalog: Path) -> int:
    if not catalog.is_file():
        return 0
    try:
        with closing(sqlite3.connect(f"{catalog.as_uri()}?mode=ro", uri=True, timeout=0.05)) as db:
            row = db.execute("SELECT value FROM meta WHERE key='generation'").fetchone()
    except sqlite3.Error:
        return 0
    return int(row[0]) if row else 0


def _newest(directory: Path) -> int:
    """The newest modification time in a folder and its subfolders (0 when there is none)."""
    newest = 0
    with suppress(FileNotFoundError):
        stack = [directory]
        newest = directory.stat().st_mtime_ns
        while stack:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    with suppress(FileNotFoundError):
                        newest = max(newest, entry.stat(follow_symlinks=False).st_mtime_ns)
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(Path(entry.path))
    return newest


def _reached(moment: Moment, start: Watch, now: Watch, launched_ns: int) -> bool:
    if moment.phase == "start-up":
        return True
    if moment.phase == "images":
        return now.rows >= start.rows + moment.after
    if moment.phase == "commit":
        return now.generation >= start.generation + moment.after
    if moment.phase == "videos":
        return now.thumbs_ns >= launched_ns
    if moment.phase == "saving":
        return now.index_ns >= launched_ns
    raise ValueError(f"unknown phase {moment.phase!r}")


def kill_at(command: list[str], collection: Path, moment: Moment, timeout: float = 60.0) -> Kill:
    """Run `command` and SIGKILL it at `moment`; a run that ends first must end well."""
    start = watch(collection)
    launched_ns = time.time_ns()
    started = time.monotonic()
    with open(os.devnull, "wb") as devnull:
        process = subprocess.Popen(
            command, cwd=ROOT, stdout=devnull, stderr=subprocess.PIPE
        )
    try:
        reached: float | None = None
        while process.poll() is None:
            now = time.monotonic()
            if now - started > timeout:
                raise TimeoutError(f"{' '.join(command)} ran over {timeout} s")
            if reached is None and _reached(moment, start, watch(collection), launched_ns):
                reached = now
            if reached is not None and now - reached >= moment.delay:
                process.send_signal(signal.SIGKILL)
                break
            time.sleep(POLL)
        _, stderr = process.communicate(timeout=timeout)
    finally:
        stop(process)
    if process.returncode not in (0, -signal.SIGKILL):
        raise RuntimeError(f"the run exited {process.returncode}: {stderr.decode().strip()}")
    return Kill(moment, process.returncode == -signal.SIGKILL, time.monotonic() - started)


def plan_kills(count: int, rng: random.Random, startup: float = 0.6) -> list[Moment]:
    """`count` moments that walk through a run from its start to its saved index: kills that
    leave work behind come first, since each re-run resumes where the last one stopped."""
    pattern = ("start-up", "images", "commit", "images", "start-up", "commit", "images")
    pattern += ("videos", "commit", "videos", "saving", "start-up", "saving", "images")
    moments = []
    for number in range(count):
        phase = pattern[number % len(pattern)]
        if phase == "start-up":
            moments.append(Moment(phase, delay=rng.uniform(0.0, startup)))
        elif phase == "images":
            moments.append(Moment(phase, after=rng.randint(1, 2 * BATCH), delay=rng.uniform(0, 0.01)))
        elif phase == "commit":
            moments.append(Moment(phase, after=rng.randint(1, 3), delay=rng.uniform(0, 0.005)))
        elif phase == "videos":
            moments.append(Moment(phase, delay=rng.uniform(0, 0.05)))
        else:
            moments.append(Moment(phase, delay=rng.uniform(0, 0.003)))
    return moments


# -- helper processes -----------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    """`write COLLECTION FOLDER...`: index each folder in its own run, pausing a little between
    runs, then touch COLLECTION/writer.done. `read COLLECTION`: open fresh models and one
    long-lived model in turns until writer.done appears; print what was seen as JSON."""
    parser = argparse.ArgumentParser(prog="crashkit")
    parser.add_argument("role", choices=("write", "read"))
    parser.add_argument("collection", type=Path)
    parser.add_argument("folders", type=Path, nargs="*")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.role == "write":
        _write(args.collection, args.folders, random.Random(args.seed))
    else:
        _read(args.collection)


def _write(collection: Path, folders: Sequence[Path], rng: random.Random) -> None:
    from imgfinder.search import SearchModel

    model = SearchModel(collection, "demo", create=True)
    for folder in folders:
        model.index([folder], batch_size=BATCH)
        time.sleep(rng.uniform(0.0, 0.03))
    model.close()
    (collection / "writer.done").touch()


def _read(collection: Path, limit: float = 60.0) -> None:
    from imgfinder.search import SearchModel

    lasting = SearchModel(collection, "demo", create=False)
    seen: list[int] = []
    started = time.monotonic()
    while not (collection / "writer.done").exists() and time.monotonic() - started < limit:
        fresh = SearchModel(collection, lasting.embedder, create=False, model_name="demo")
        seen.append(len(fresh.vector_index()))
        fresh.close()
        seen.append(len(lasting.vector_index()))
    lasting.close()
    print(json.dumps({"looks": len(seen), "sizes": sorted(set(seen))}))


if __name__ == "__main__":
    main()

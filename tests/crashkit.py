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
import tempfile
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

from imgfinder.indexers.base import Indexer  # noqa: E402
from imgfinder.media.video import write_video  # noqa: E402
from imgfinder.search import SearchModel  # noqa: E402
from imgfinder.store.collection import MANIFEST, STAMP, Collection  # noqa: E402
from imgfinder.store.health import check  # noqa: E402
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
    copies of images from both, `a` holds a copy of one of its own images too, and `late` holds
    new images and a copy, for a run that finishes after many killed ones to have work left."""

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
    def late(self) -> Path:
        return self.root / "late"


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
    root: Path, *, images: int = 64, copies: int = 4, videos: int = 2, late: int = 4, seed: int = 0
) -> Media:
    """Write `images` distinct PNGs (half in a/, half in b/), `copies` identical copies of some
    of them, `videos` 6-second clips and `late` more images plus a copy in late/; the same
    arguments always give the same bytes."""
    made: list[Path] = []
    for number in range(images):
        folder = root / ("a" if number < (images + 1) // 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"img_{number:03d}.png"
        picture(seed * 10_000 + number).save(path)
        made.append(path)
    for number in range(late):
        path = root / "late" / f"late_{number:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        picture(seed * 10_000 + 9_000 + number).save(path)
        made.append(path)
    pairs = [(root / "a" / "copy_of_first.png", made[0])][:copies]  # a copy met in the same run
    pairs += [
        (root / "shared" / f"copy_{n:02d}_{made[n * 7 % images].name}", made[n * 7 % images])
        for n in range(1, copies)
    ]
    if late and copies:
        pairs.append((root / "late" / "copy_of_second.png", made[1]))
    for target, source in pairs:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    clips: list[Path] = []
    for number in range(videos):
        folder = root / ("a" if number % 2 == 0 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"clip_{number}.mp4"
        clips.append(
            write_video(
                path, clip_frame(seed * 10_000 + 5_000 + number), fps=8, duration=6, size=CLIP
            )
        )
    return Media(root, tuple(made), tuple(target for target, _ in pairs), tuple(clips))


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


def run_index(paths: Sequence[Path], collection: Path, *extra: str, timeout: float = 120.0) -> dict:
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
    #: what `imgfinder check` finds, and files without vectors; empty when the collection is sound
    problems: tuple[str, ...]
    #: what `imgfinder check` finds in saved indexes (a save cut short is rebuilt by design)
    index_problems: tuple[str, ...]
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
        reasons += [f"problem: {p}" for p in self.index_problems + other.index_problems]
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
    """Open the collection with the library, as a user would after a crash, and read all it
    holds; called when no run is writing to it."""
    collection = Collection(directory, create=False)
    try:
        catalog = collection.catalog
        findings = check(collection)
        # saved indexes and temp files of killed writes are kept apart: a killed state may
        # have them (the next search rebuilds, the next run sweeps); the final one may not
        problems = [p.what for p in findings if p.saved_index is None and not p.temp_files]
        key = collection.manifest.get("embedder_key")
        vectors: dict[tuple[str, float | None], bytes] = {}
        times: dict[str, list[float | None]] = {}
        spare = 0
        if key is not None:
            store = collection.vectors(key, int(collection.manifest["embedders"][key]["dim"]))
            snapshot = catalog.snapshot(key)
            spare = len(store) - len(set(snapshot.rows.values()))
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
            strays=_temps(directory),
            problems=tuple(problems),
            index_problems=tuple(p.what for p in findings if p.saved_index is not None),
            spare_rows=spare,
        )
    finally:
        collection.close()


def _is_temp(path: Path) -> bool:
    """A file `imgfinder.atomic` writes before moving it into place (".name.random.tmp")."""
    return path.name.startswith(".") and path.name.endswith(".tmp")


def _temps(directory: Path) -> frozenset[str]:
    return frozenset(
        str(path.relative_to(directory)) for path in directory.rglob("*") if _is_temp(path)
    )


def _thumbs(directory: Path) -> dict[str, frozenset[str]]:
    if not directory.is_dir():
        return {}
    return {
        folder.name: frozenset(entry.name for entry in folder.iterdir() if not _is_temp(entry))
        for folder in directory.iterdir()
        if folder.is_dir()
    }


# -- clean runs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Clean:
    """A clean run of the whole media folder into a fresh collection: what every interrupted or
    concurrent run must end up equal to."""

    media: Media
    collection: Path
    fingerprint: Fingerprint
    report: dict
    #: seconds a run spends outside its indexing work (imports, model, saving the index)
    startup: float


def clean_run(base: Path, **media_args: int) -> Clean:
    """Make the media under `base` and index it once, undisturbed."""
    media = make_media(base / "media", **media_args)
    collection = base / "clean"
    started = time.monotonic()
    report = run_index([media.root], collection)
    wall = time.monotonic() - started
    return Clean(
        media, collection, collection_fingerprint(collection), report, wall - report["seconds"]
    )


def resume_counts(before: Fingerprint, whole: Fingerprint) -> dict[str, int]:
    """The summary a run to completion must print when it resumes from `before`: the contents
    it lacks are indexed, its paths are unchanged, the other new paths are copies."""
    new = whole.contents - before.contents
    indexed = len(new)
    return {
        "scanned": len(whole.paths),
        "indexed": indexed,
        "unchanged": len(before.paths),
        "copies": len(whole.paths) - len(before.paths) - indexed,
        "renamed": 0,
        "removed": 0,
        "frames": sum(1 for content, t in whole.vectors if content in new and t is not None),
        "skipped": 0,
        "left": 0,
    }


# -- kills at chosen moments ----------------------------------------------------------------

#: where in a run a kill lands: before any commit, between image batches (often after the
#: vectors are fsynced and before the catalog commits them), right after a commit, while a
#: video is decoded and embedded, while the finished run saves its index, and in the middle of
#: an atomic file write (manifest, thumbnail or saved index) whose temp file is on disk
PHASES = ("start-up", "images", "commit", "videos", "saving", "writing")


@dataclass(frozen=True)
class Moment:
    """Kill once `phase` is reached, `delay` seconds later. For "images" and "commit": once the
    run has added `after` vector rows or commits; for "writing": once it has begun `after` + 1
    atomic writes. "start-up" is reached at launch, and a start-up kill comes at the run's first
    vector row or commit if that is sooner than `delay`."""

    phase: str
    after: int = 0
    delay: float = 0.0


@dataclass(frozen=True)
class Kill:
    moment: Moment
    #: False when the run ended on its own before its moment came
    killed: bool
    seconds: float


@dataclass(frozen=True)
class Watch:
    """What a watcher sees of a run from outside: vector rows, generation, newest files, and
    the temp files of atomic writes under way (or left by a killed run)."""

    rows: int
    generation: int
    thumbs_ns: int
    index_ns: int
    temps: frozenset[str]


def watch(collection: Path) -> Watch:
    """A collection's progress, read without opening it for writing (no migrations, no locks)."""
    return Watch(
        rows=_vector_rows(collection),
        generation=_generation(collection / "catalog.sqlite"),
        thumbs_ns=_newest(collection / "thumbs"),
        index_ns=_newest(collection / "index"),
        temps=_temps(collection) if collection.is_dir() else frozenset(),
    )


def _vector_rows(collection: Path) -> int:
    try:
        manifest = json.loads((collection / MANIFEST).read_text())
        dim = min(int(entry["dim"]) for entry in manifest["embedders"].values())
    except (OSError, ValueError, KeyError):  # not written yet, or being replaced
        return 0
    return sum(path.stat().st_size for path in (collection / "vectors").glob("*.f16")) // (2 * dim)


def _generation(catalog: Path) -> int:
    if not catalog.is_file():
        return 0
    try:
        with closing(sqlite3.connect(f"{catalog.as_uri()}?mode=ro", uri=True, timeout=0.05)) as db:
            row = db.execute("SELECT value FROM meta WHERE key='generation'").fetchone()
    except sqlite3.Error:  # not created yet
        return 0
    return int(row[0]) if row else 0


def _newest(directory: Path) -> int:
    """The newest modification time in a folder tree, 0 when there is none."""
    newest = 0
    stack = [directory]
    while stack:
        folder = stack.pop()
        with suppress(FileNotFoundError):
            newest = max(newest, folder.stat().st_mtime_ns)
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
                    else:
                        with suppress(FileNotFoundError):
                            newest = max(newest, entry.stat(follow_symlinks=False).st_mtime_ns)
    return newest


def _reached(moment: Moment, start: Watch, now: Watch, launched_ns: int, writes: int) -> bool:
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
    if moment.phase == "writing":
        return writes > moment.after
    raise ValueError(f"unknown phase {moment.phase!r}")


def kill_at(command: list[str], collection: Path, moment: Moment, timeout: float = 60.0) -> Kill:
    """Run `command` and SIGKILL it at `moment`; a run that ends first must have ended well."""
    started = time.monotonic()
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=errors)
        try:
            _kill_when(process, collection, moment, timeout)
        finally:
            stop(process)
        errors.seek(0)
        stderr = errors.read().decode(errors="replace").strip()
    if process.returncode not in (0, -signal.SIGKILL):
        raise RuntimeError(f"the run exited {process.returncode}: {stderr}")
    return Kill(moment, process.returncode == -signal.SIGKILL, time.monotonic() - started)


def _kill_when(process: subprocess.Popen, collection: Path, moment: Moment, timeout: float) -> None:
    """Watch the collection while `process` runs and SIGKILL it once `moment` has come."""
    start = watch(collection)
    launched_ns = time.time_ns()
    started = time.monotonic()
    reached: float | None = None
    writes: set[str] = set()  # temp files seen that were not there at the start
    while process.poll() is None:
        now = time.monotonic()
        if now - started > timeout:
            raise TimeoutError(f"{process.args} ran over {timeout} s")
        seen = watch(collection)
        writes |= seen.temps - start.temps
        if reached is None and _reached(moment, start, seen, launched_ns, len(writes)):
            reached = now
        began = seen.rows > start.rows or seen.generation > start.generation
        if reached is not None and (
            now - reached >= moment.delay or (moment.phase == "start-up" and began)
        ):
            process.send_signal(signal.SIGKILL)
            return
        time.sleep(POLL)


#: a round's kills in order, each with the range of its `after`; those that need work left
#: come first, since each re-run resumes where the last one stopped (`reachable` skips a kill
#: whose phase no run will reach again)
ROUND: tuple[tuple[str, tuple[int, int]], ...] = (
    ("start-up", (0, 0)),
    ("images", (1, BATCH + 1)),
    ("commit", (1, 2)),
    ("images", (1, BATCH + 1)),
    ("start-up", (0, 0)),
    ("images", (1, BATCH + 1)),
    ("commit", (1, 2)),
    ("images", (1, BATCH + 1)),
    ("commit", (1, 2)),
    ("images", (1, BATCH + 1)),
    ("videos", (0, 0)),
    ("videos", (0, 0)),
    ("writing", (0, 3)),
    ("saving", (0, 0)),
    ("start-up", (0, 0)),
    ("writing", (0, 3)),
    ("saving", (0, 0)),
    ("start-up", (0, 0)),
)
#: seconds to wait after a phase is reached, at most
DELAYS = {"start-up": 1.0, "images": 0.01, "commit": 0.005, "videos": 0.02, "saving": 0.003}


def plan_kills(rng: random.Random, startup: float) -> list[Moment]:
    """A round's moments with random rows, commits and delays; `startup` is how long a run takes
    to begin indexing, so that start-up kills land anywhere before the first commit."""
    return [
        Moment(
            phase,
            rng.randint(*after),
            rng.uniform(0.0, DELAYS.get(phase, 0.0) * (startup if phase == "start-up" else 1)),
        )
        for phase, after in ROUND
    ]


def reachable(phase: str, collection: Path, missing: set[str]) -> bool:
    """Whether the next run gets to `phase`, given the kinds of content ("image", "video") the
    collection still lacks: images and commits while images are missing, videos while videos
    are, a save while anything is missing or no saved index is of the current generation."""
    if phase in ("images", "commit"):
        return "image" in missing
    if phase == "videos":
        return "video" in missing
    if phase == "saving":
        return bool(missing) or not _saved(collection)
    return True


def _saved(collection: Path) -> bool:
    """A saved index stamped with the catalog's generation exists."""
    generation = _generation(collection / "catalog.sqlite")
    for stamp in (collection / "index").glob(f"*/{STAMP}"):
        with suppress(OSError, ValueError):
            if json.loads(stamp.read_text()).get("generation") == generation:
                return True
    return False


@dataclass
class Round:
    """Kills against one collection, each followed by a look at what it left, then a run to
    completion."""

    kills: list[Kill] = field(default_factory=list)
    #: why a killed state was not a sound part of the clean collection, per kill
    unsound: list[str] = field(default_factory=list)
    #: killed states the library opened and read (a run killed early may leave no collection)
    opened: int = 0
    before: Fingerprint | None = None
    report: dict = field(default_factory=dict)
    after: Fingerprint | None = None

    @property
    def killed(self) -> list[Kill]:
        return [kill for kill in self.kills if kill.killed]


def kill_round(clean: Clean, collection: Path, rng: random.Random, kills: int = 10) -> Round:
    """Kill `imgfinder index` at the planned moments, re-running after each, and then in its
    start-up until at least `kills` runs were killed; check every state a kill leaves, then let
    a last run finish. The late/ folder is held back until that last run, so it has new files
    to index whatever the kills left."""
    command = index_command([clean.media.root], collection)
    result = Round()
    planned = plan_kills(rng, clean.startup)
    late = {str(path) for path in clean.media.late.iterdir()}
    kinds = {content: "image" if t is None else "video" for content, t in clean.fingerprint.vectors}
    wanted = {content for path, content, _ in clean.fingerprint.items if path not in late}
    held = collection.parent / f"{collection.name}-late"
    state: Fingerprint | None = None
    os.rename(clean.media.late, held)
    try:
        while planned or len(result.killed) < kills:
            if len(result.kills) > len(ROUND) + 2 * kills:
                raise RuntimeError(f"only {len(result.killed)} of {result.kills} runs were killed")
            moment = planned.pop(0) if planned else Moment("start-up", 0, rng.uniform(0.0, 0.3))
            have = state.contents if state is not None else set()
            if not reachable(moment.phase, collection, {kinds[c] for c in wanted - have}):
                continue
            result.kills.append(kill_at(command, collection, moment))
            if (collection / MANIFEST).exists():
                state = collection_fingerprint(collection)
                result.opened += 1
                result.unsound += [f"{moment}: {why}" for why in state.part_of(clean.fingerprint)]
    finally:
        os.rename(held, clean.media.late)
    result.before = collection_fingerprint(collection)
    result.report = run_index([clean.media.root], collection)
    result.after = collection_fingerprint(collection)
    return result


# -- two writers ----------------------------------------------------------------------------


def shared_rows(collection: Path) -> int:
    """How many vector rows the catalog gives to more than one item (two writers appending at
    once would hand out the same row twice)."""
    opened = Collection(collection, create=False)
    try:
        rows = list(opened.catalog.snapshot(opened.manifest["embedder_key"]).rows.values())
    finally:
        opened.close()
    return len(rows) - len(set(rows))


def writer_folders(media: Media) -> tuple[list[Path], list[Path]]:
    """Two writers' folders: different (a, b) and overlapping (both index `shared`)."""
    return [media.a, media.shared], [media.b, media.shared]


def sequential_run(media: Media, collection: Path) -> Fingerprint:
    """The two writers' folders indexed one after the other."""
    for folders in writer_folders(media):
        run_index(folders, collection)
    return collection_fingerprint(collection)


@dataclass(frozen=True)
class Writers:
    returncodes: tuple[int, ...]
    #: which writers said they were waiting for the other run
    waited: tuple[bool, ...]
    stderr: tuple[str, ...]
    fingerprint: Fingerprint | None
    seconds: float


def two_writers(media: Media, collection: Path, *, held: bool, timeout: float = 60.0) -> Writers:
    """Start two `imgfinder index` runs on one collection at once. `held`: this process holds
    the writer lock until both say they wait, so the two race for it the moment it is free."""
    started = time.monotonic()
    collection.mkdir(parents=True, exist_ok=True)
    logs = [collection.parent / f"{collection.name}.writer{n}.log" for n in range(2)]
    lock = WriterLock(collection)
    if held and not lock.try_acquire():
        raise RuntimeError(f"{collection} is locked already")
    processes = []
    try:
        for folders, log in zip(writer_folders(media), logs, strict=True):
            with open(log, "wb") as handle:
                command = index_command(folders, collection)
                processes.append(
                    subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=handle)
                )
        if held:
            for process, log in zip(processes, logs, strict=True):
                if not wait_for_text(log, WAITING, process, timeout):
                    raise RuntimeError(
                        f"a writer did not wait for the held lock: {log.read_text()}"
                    )
            lock.release()
        for process in processes:
            process.wait(timeout=timeout)
    finally:
        lock.release()
        for process in processes:
            stop(process)
    stderr = tuple(log.read_text(errors="replace") for log in logs)
    returncodes = tuple(process.returncode for process in processes)
    return Writers(
        returncodes=returncodes,
        waited=tuple(WAITING in text for text in stderr),
        stderr=stderr,
        fingerprint=collection_fingerprint(collection) if not any(returncodes) else None,
        seconds=time.monotonic() - started,
    )


# -- readers and saved indexes --------------------------------------------------------------


def make_rounds(root: Path, rounds: int = 5, images: int = 4, seed: int = 0) -> list[Path]:
    """Folders of new images for a writer that commits in several runs (one run a folder)."""
    folders = []
    for number in range(rounds):
        folder = root / f"round_{number}"
        folder.mkdir(parents=True, exist_ok=True)
        for image in range(images):
            picture(seed * 10_000 + 8_000 + number * images + image).save(
                folder / f"new_{image}.png"
            )
        folders.append(folder)
    return folders


@dataclass(frozen=True)
class Stale:
    """One stale-index trial: what readers saw while a writer committed run after run."""

    #: a fresh model's index that did not hold what the catalog held at its own generation
    stale_looks: int
    #: saved indexes seen stamped with the catalog's generation yet lacking some of its items
    stale_saves: int
    #: new images a fresh model opened after the writer did not find as themselves
    missing: list[str]
    #: items the long-lived model held after its next query, and the catalog's live items
    lasting: tuple[int, int]
    reader: dict
    errors: list[str]
    seconds: float


def saved_index_problems(collection: Collection) -> list[str]:
    """A saved index stamped with the catalog's current generation must hold exactly the
    catalog's live items, as a model that loads it trusts it to. Safe while others save: an
    index whose stamp or generation changed while it was read is not judged."""
    key = collection.manifest["embedder_key"]
    store = collection.vectors(key, int(collection.manifest["embedders"][key]["dim"]))
    snapshot = collection.catalog.snapshot(key)
    problems = []
    for stamp in sorted((collection.dir / "index").glob(f"*/{STAMP}")):
        try:
            before = stamp.read_text()
            index = Indexer.load(stamp.parent)
            after = stamp.read_text()
        except (OSError, ValueError):  # removed or replaced by a save under way
            continue
        saved = json.loads(before)
        if (
            before != after
            or saved.get("generation") != snapshot.generation
            or collection.catalog.generation() != snapshot.generation
        ):
            continue  # an older save, which no model loads for this generation, or a new one
        if len(index) != len(snapshot.rows):
            problems.append(
                f"{stamp.parent.name} is stamped {saved} but holds {len(index)} items, "
                f"not the {len(snapshot.rows)} of that generation"
            )
            continue
        ids = list(snapshot.rows)
        vectors = store.read(np.asarray([snapshot.rows[i] for i in ids], dtype=np.int64))
        if ids and float(index.search(vectors, 1)[0][:, 0].min()) < 0.999:
            problems.append(f"{stamp.parent.name} lacks some items of generation {saved}")
    return problems


def stale_trial(
    base: Path, collection: Path, folders: Sequence[Path], seed: int, timeout: float = 60.0
) -> Stale:
    """Copy the indexed `base` collection, then let a writer process index `folders` one run
    each while a reader process opens fresh and long-lived models and this process queries a
    long-lived model too; afterwards check saved stamps and look for every new image."""
    started = time.monotonic()
    shutil.copytree(base, collection)
    lasting = SearchModel(collection, "demo", create=False)
    errors: list[str] = []
    sizes: list[int] = []
    seen_file, read_log, write_log = (
        collection.parent / f"{collection.name}.{name}" for name in ("seen", "read", "write")
    )
    with open(seen_file, "wb") as seen_out, open(read_log, "wb") as read_err:
        reader = subprocess.Popen(
            helper_command("read", str(collection)), cwd=ROOT, stdout=seen_out, stderr=read_err
        )
    with open(write_log, "wb") as write_err:
        writer = subprocess.Popen(
            helper_command("write", str(collection), *map(str, folders), "--seed", str(seed)),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=write_err,
        )
    try:
        while writer.poll() is None and time.monotonic() - started < timeout:
            try:
                lasting.search_text("a red circle", k=3)
                sizes.append(len(lasting.vector_index()))
            except Exception as exc:  # every query must answer while the writer works
                errors.append(f"long-lived query: {exc!r}")
            time.sleep(0.005)
        writer.wait(timeout=timeout)
        reader.wait(timeout=timeout)
    finally:
        stop(writer)
        stop(reader)
    for name, process, log in (("writer", writer, write_log), ("reader", reader, read_log)):
        if process.returncode != 0:
            errors.append(f"{name} exited {process.returncode}: {log.read_text().strip()}")
    if sizes != sorted(sizes):
        errors.append(f"the long-lived model went back to fewer items: {sizes}")
    seen = json.loads(seen_file.read_text()) if reader.returncode == 0 else {}
    errors += seen.get("errors", [])
    lasting.search_text("a red circle", k=3)
    live = len(lasting.collection.catalog.snapshot(lasting.embedder.key).rows)
    held = len(lasting.vector_index())
    stale_saves = int(seen.get("stale_saves", 0)) + len(saved_index_problems(lasting.collection))
    fresh = SearchModel(collection, lasting.embedder, create=False, model_name="demo")
    missing = [
        str(path)
        for folder in folders
        for path in sorted(folder.glob("*.png"))
        if not _finds_itself(fresh, path)
    ]
    fresh.close()
    lasting.close()
    return Stale(
        stale_looks=int(seen.get("stale", 0)),
        stale_saves=stale_saves,
        missing=missing,
        lasting=(held, live),
        reader=seen,
        errors=errors,
        seconds=time.monotonic() - started,
    )


def _finds_itself(model: SearchModel, path: Path) -> bool:
    hits = model.search_image(path, k=1)
    return bool(hits) and hits[0].path == str(path) and hits[0].score > 0.99


# -- helper processes -----------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    """`write COLLECTION FOLDER...`: once the reader is ready, index each folder in a run of its
    own with short random pauses between runs, then create COLLECTION/writer.done.
    `read COLLECTION`: open fresh models and query a long-lived one in turns until writer.done
    appears, and print as JSON how often a model's index or a saved index did not match its
    generation."""
    parser = argparse.ArgumentParser(prog="crashkit")
    parser.add_argument("role", choices=("write", "read"))
    parser.add_argument("collection", type=Path)
    parser.add_argument("folders", type=Path, nargs="*")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.role == "write":
        _write(args.collection, args.folders, random.Random(args.seed))
    else:
        print(json.dumps(_read(args.collection)))


READY, DONE = "reader.ready", "writer.done"


def _write(
    collection: Path, folders: Sequence[Path], rng: random.Random, limit: float = 60.0
) -> None:
    model = SearchModel(collection, "demo", create=False)
    deadline = time.monotonic() + limit
    while not (collection / READY).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        for folder in folders:
            model.index([folder], batch_size=BATCH)
            time.sleep(rng.uniform(0.0, 0.03))
    finally:
        model.close()
        (collection / DONE).touch()


def _read(collection: Path, limit: float = 60.0) -> dict:
    lasting = SearchModel(collection, "demo", create=False)
    key = lasting.embedder.key
    looks = stale = stale_saves = 0
    errors: list[str] = []
    deadline = time.monotonic() + limit
    (collection / READY).touch()
    while not (collection / DONE).exists() and time.monotonic() < deadline:
        fresh = SearchModel(collection, lasting.embedder, create=False, model_name="demo")
        for model in (fresh, lasting):
            try:
                generation = model.collection.catalog.generation()
                size = len(model.vector_index())
                snapshot = model.collection.catalog.snapshot(key)
                stale_saves += len(saved_index_problems(model.collection))
            except Exception as exc:  # reported, so the test says what went wrong
                errors.append(repr(exc))
                continue
            looks += 1
            if snapshot.generation == generation and size != len(snapshot.rows):
                stale += 1
        fresh.close()
    lasting.close()
    return {"looks": looks, "stale": stale, "stale_saves": stale_saves, "errors": errors}


if __name__ == "__main__":
    main()

"""A real `imgfinder index` SIGKILLed over and over at chosen moments, re-run after each kill,
must leave a sound collection every time and end exactly where a clean run ends: nothing lost,
nothing duplicated, nothing leaked."""

from __future__ import annotations

import dataclasses
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from crashkit import (
    PHASES,
    ROOT,
    Clean,
    clean_run,
    collection_fingerprint,
    index_command,
    kill_round,
    resume_counts,
    run_index,
)

pytest.importorskip("av")

SEED = 20260611
KILLS = 10


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Clean:
    return clean_run(tmp_path_factory.mktemp("crash"))


def test_the_clean_run_indexes_every_file(clean: Clean) -> None:
    """The reference itself: every image, video and copy is in it, and it is sound."""
    media = clean.media
    assert clean.report["indexed"] == len(media.images) + len(media.videos), clean.report
    assert clean.report["copies"] == len(media.copies), clean.report
    assert clean.report["skipped"] == clean.report["left"] == 0, clean.report
    assert len(clean.fingerprint.paths) == clean.report["scanned"]
    assert clean.fingerprint.problems == clean.fingerprint.index_problems == ()
    assert clean.fingerprint.spare_rows == 0


def test_killed_runs_resume_to_exactly_the_clean_collection(clean: Clean, tmp_path: Path) -> None:
    result = kill_round(clean, tmp_path / "killed", random.Random(SEED), kills=KILLS)

    killed = result.killed
    assert len(killed) >= KILLS, result.kills
    phases = {kill.moment.phase for kill in killed}
    # saves last milliseconds, so kills aimed at them often come too late: the test below
    # kills inside atomic writes deterministically
    assert {"start-up", "images", "commit", "videos"} <= phases <= set(PHASES), phases
    # every killed state opened, was sound and held only what the clean run holds
    assert result.opened >= len(result.kills) - 1, "a killed collection did not open"
    assert not result.unsound, "\n".join(result.unsound)

    assert result.before is not None and result.after is not None
    summary = {key: result.report[key] for key in resume_counts(result.before, clean.fingerprint)}
    assert summary == resume_counts(result.before, clean.fingerprint), result.report
    assert summary["indexed"] > 0, "the last run had nothing left to do"
    assert result.report["cancelled"] is False
    ignoring_strays = dataclasses.replace(result.after, strays=clean.fingerprint.strays)
    assert ignoring_strays == clean.fingerprint, result.after.differences(clean.fingerprint)
    strays = sorted(result.after.strays)
    assert not strays, f"interrupted atomic writes left their temp files behind: {strays}"


#: run `imgfinder index`, SIGKILLing itself inside the N-th atomic replace of a matching file
DIE_MID_WRITE = """
import os, signal, sys
real, suffix, left = os.replace, sys.argv[1], [int(sys.argv[2])]
def replace(source, target):
    if str(target).endswith(suffix):
        left[0] -= 1
        if left[0] == 0:
            os.kill(os.getpid(), signal.SIGKILL)
    real(source, target)
os.replace = replace
from imgfinder.cli import main
sys.argv = ["imgfinder", "index", *sys.argv[3:]]
main()
"""


@pytest.mark.parametrize(
    ("suffix", "nth"), [("stamp.json", 1), ("vectors.npz", 1), (".jpg", 3), ("manifest.json", 2)]
)
def test_a_run_killed_inside_a_write_leaves_nothing_behind(
    clean: Clean, tmp_path: Path, suffix: str, nth: int
) -> None:
    """Killed between writing a temp file and moving it into place: the temp file stays, and
    the next run sweeps it; the collection ends equal to the clean run."""
    collection = tmp_path / "killed"
    command = index_command([clean.media.root], collection)[3:]
    died = subprocess.run(
        [sys.executable, "-c", DIE_MID_WRITE, suffix, str(nth), *command[1:]],
        cwd=ROOT,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert died.returncode == -signal.SIGKILL, died.stderr.decode()[-400:]
    assert collection_fingerprint(collection).strays, "the kill left no temp file to sweep"
    run_index([clean.media.root], collection)
    after = collection_fingerprint(collection)
    assert after.strays == frozenset()
    assert after == clean.fingerprint, after.differences(clean.fingerprint)

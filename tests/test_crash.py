"""A real `imgfinder index` SIGKILLed over and over at chosen moments, re-run after each kill,
must leave a sound collection every time and end exactly where a clean run ends: nothing lost,
nothing duplicated, nothing leaked."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest
from crashkit import PHASES, Clean, clean_run, kill_round, resume_counts

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
    assert {"start-up", "images", "commit", "videos", "saving"} <= phases <= set(PHASES), phases
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

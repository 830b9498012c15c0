"""Crash and concurrency soak: the scenarios of tests/test_crash.py and tests/test_concurrency.py
at scale (issue "Nothing lost, nothing leaked").

--kills N: SIGKILLs of a real `imgfinder index`, in rounds of at least 10 against one collection
each, every killed state checked and every round finished by a run to completion that must
equal a clean run byte for byte. --writer-trials N: two writers at once on one collection,
compared with one after the other. --stale-trials N: a writer commits run after run while
readers build, load and save indexes. Writes bench/results/soak.json and soak.md; exits 1 when
anything was lost, shared, stale or left behind.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import crashkit
from common import write_result


def soak_kills(base: Path, kills: int, seed: int) -> dict[str, Any]:
    """Rounds of kills until `kills` runs were killed; each round starts a fresh collection."""
    started = time.monotonic()
    clean = crashkit.clean_run(base)
    rng = random.Random(seed)
    rounds: list[dict[str, Any]] = []
    phases: Counter[str] = Counter()
    total = 0
    while total < kills:
        collection = base / f"round{len(rounds)}"
        result = crashkit.kill_round(clean, collection, rng, kills=min(10, kills - total))
        assert result.before is not None and result.after is not None
        expected = crashkit.resume_counts(result.before, clean.fingerprint)
        ignoring_strays = dataclasses.replace(result.after, strays=clean.fingerprint.strays)
        total += len(result.killed)
        phases.update(kill.moment.phase for kill in result.killed)
        rounds.append(
            {
                "killed": len(result.killed),
                "runs": len(result.kills),
                "opened": result.opened,
                "unsound": result.unsound,
                "counts_consistent": all(result.report[k] == v for k, v in expected.items()),
                "equal_to_clean": ignoring_strays == clean.fingerprint,
                "differences": result.after.differences(clean.fingerprint),
                "strays": sorted(result.after.strays),
                "spare_rows": result.after.spare_rows,
            }
        )
        shutil.rmtree(collection)
    return {
        "kills": total,
        "rounds": rounds,
        "phases": dict(phases),
        "sound_rounds": sum(not r["unsound"] for r in rounds),
        "equal_rounds": sum(r["equal_to_clean"] and r["counts_consistent"] for r in rounds),
        "rounds_with_strays": sum(bool(r["strays"]) for r in rounds),
        "seconds": time.monotonic() - started,
    }


def soak_writers(base: Path, trials: int) -> dict[str, Any]:
    """Two writers at once, half of the trials racing for a lock held until both wait."""
    started = time.monotonic()
    media = crashkit.make_media(base / "media", images=8, copies=3, videos=1, late=0)
    sequential = crashkit.sequential_run(media, base / "sequential")
    failures: list[dict[str, Any]] = []
    shared = spare = waited = 0
    for trial in range(trials):
        collection = base / f"trial{trial}"
        result = crashkit.two_writers(media, collection, held=trial % 2 == 1)
        waited += any(result.waited)
        problems = (
            [f"exit codes {result.returncodes}: {result.stderr}"] if any(result.returncodes) else []
        )
        if result.fingerprint is not None:
            shared += crashkit.shared_rows(collection)
            spare += result.fingerprint.spare_rows
            problems += result.fingerprint.differences(sequential)
        if problems:
            failures.append({"trial": trial, "problems": problems})
        shutil.rmtree(collection)
    return {
        "trials": trials,
        "shared_rows": shared,
        "spare_rows": spare,
        "trials_with_a_writer_waiting": waited,
        "equal_to_sequential": trials - len(failures),
        "failures": failures,
        "seconds": time.monotonic() - started,
    }


def soak_stale(base: Path, trials: int, seed: int) -> dict[str, Any]:
    """A writer process commits four runs while a reader process and this one look."""
    started = time.monotonic()
    media = crashkit.make_media(base / "media", images=8, copies=0, videos=0, late=0)
    indexed = base / "base"
    crashkit.run_index([media.a], indexed)
    folders = crashkit.make_rounds(base / "rounds", rounds=4, images=2 * crashkit.BATCH)
    stale_saves = stale_looks = missing = looks = 0
    failures: list[dict[str, Any]] = []
    for trial in range(trials):
        collection = base / f"trial{trial}"
        result = crashkit.stale_trial(indexed, collection, folders, seed=seed + trial)
        stale_saves += result.stale_saves
        stale_looks += result.stale_looks
        missing += len(result.missing)
        looks += int(result.reader.get("looks", 0))
        if (
            result.errors
            or result.stale_saves
            or result.stale_looks
            or result.missing
            or result.lasting[0] != result.lasting[1]
        ):
            failures.append({"trial": trial, **dataclasses.asdict(result)})
        shutil.rmtree(collection)
    return {
        "trials": trials,
        "trials_with_stale_saves": sum(1 for f in failures if f["stale_saves"]),
        "stale_saves": stale_saves,
        "stale_looks": stale_looks,
        "missing_images": missing,
        "reader_looks": looks,
        "failures": failures,
        "seconds": time.monotonic() - started,
    }


def table(kills: dict[str, Any], writers: dict[str, Any], stale: dict[str, Any]) -> str:
    rounds = len(kills["rounds"])
    survived = sum(
        r["killed"]
        for r in kills["rounds"]
        if not r["unsound"] and r["equal_to_clean"] and r["counts_consistent"]
    )
    return "\n".join(
        [
            "| scenario | result | seconds |",
            "|---|---|--:|",
            f"| SIGKILL of `imgfinder index` ({rounds} rounds; phases "
            f"{', '.join(f'{p} {n}' for p, n in sorted(kills['phases'].items()))}) "
            f"| kills survived {survived}/{kills['kills']}: every killed state sound and "
            f"{kills['equal_rounds']}/{rounds} rounds ending equal to the clean run, vectors byte "
            f"for byte; temp files of interrupted writes left behind in "
            f"{kills['rounds_with_strays']}/{rounds} rounds "
            f"| {kills['seconds']:.0f} |",
            f"| two writers at once | {writers['trials']} trials with "
            f"{writers['shared_rows']} shared vector rows and {writers['spare_rows']} wasted; "
            f"{writers['equal_to_sequential']}/{writers['trials']} equal to one after the "
            f"other; a writer waited for the other in {writers['trials_with_a_writer_waiting']}/"
            f"{writers['trials']} | {writers['seconds']:.0f} |",
            f"| readers saving while a writer commits | stale saves "
            f"{stale['trials_with_stale_saves']}/{stale['trials']} trials "
            f"({stale['stale_saves']} stale saved indexes, {stale['stale_looks']} stale "
            f"indexes in {stale['reader_looks']} reader looks, {stale['missing_images']} new "
            f"images not found) | {stale['seconds']:.0f} |",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--writer-trials", type=int, default=200)
    parser.add_argument("--stale-trials", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="imgfinder-soak-") as tmp:
        base = Path(tmp)
        kills = soak_kills(base / "kills", args.kills, args.seed)
        print(f"kills: {kills['kills']} in {len(kills['rounds'])} rounds", flush=True)
        writers = soak_writers(base / "writers", args.writer_trials)
        print(f"writer trials: {writers['trials']}", flush=True)
        stale = soak_stale(base / "stale", args.stale_trials, args.seed)
        print(f"stale trials: {stale['trials']}", flush=True)
    text = table(kills, writers, stale)
    print(text)
    write_result(
        "soak",
        {"seed": args.seed, "kills": kills, "writers": writers, "stale": stale},
        "# Crash and concurrency soak\n\n" + text,
    )
    lost = kills["equal_rounds"] < len(kills["rounds"]) or kills["sound_rounds"] < len(
        kills["rounds"]
    )
    leaked = kills["rounds_with_strays"] > 0
    return int(lost or leaked or writers["failures"] != [] or stale["failures"] != [])


if __name__ == "__main__":
    sys.exit(main())

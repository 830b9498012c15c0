"""A real "no match": confidence against unrelated queries, and queries a model cannot read.

The acceptance runs on a fresh demo world (never the training seed), written to disk and
indexed with the bundled demo model through the real pipeline; queries go through
`SearchModel` at the default cutoff, the one every shell uses.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_main
from out_of_domain import HELD_OUT, TUNED, UNREADABLE, out_of_domain_images

from imgfinder.demo import world
from imgfinder.errors import ConfigError
from imgfinder.evaluation import capped_recall_at_k
from imgfinder.relevance import DEFAULT_CONFIDENCE, Calibration
from imgfinder.search import SearchModel

HALVES = {"tuned": TUNED, "held_out": HELD_OUT}


def empty_share(answers: list[list | None]) -> float:
    """The share of queries answered with nothing: refused (None) or no hit."""
    return sum(not hits for hits in answers) / len(answers)


def confident_text(model: SearchModel, text: str) -> list | None:
    """The hits at the default cutoff; None when the model refuses the query."""
    try:
        return model.search_text(text, k=24, min_confidence=DEFAULT_CONFIDENCE)
    except ConfigError:
        return None


def test_out_of_domain_queries_find_nothing_at_the_default_cutoff(
    fresh_demo, record_property
) -> None:
    model, _, _ = fresh_demo
    answers = {name: [confident_text(model, t) for t in texts] for name, texts in HALVES.items()}
    tuned, held_out = empty_share(answers["tuned"]), empty_share(answers["held_out"])
    # the cutoff alone, on the queries the vocabulary check lets through
    read = {name: [a for a in found if a is not None] for name, found in answers.items()}
    assert empty_share(read["tuned"]) >= 0.85 and empty_share(read["held_out"]) >= 0.85, read
    pictures = [
        model.search_image(image, k=24, min_confidence=DEFAULT_CONFIDENCE)
        for image in out_of_domain_images(40, seed=3)
    ]
    record_property("empty_share", (tuned, held_out, empty_share(pictures)))
    assert tuned >= 0.90, tuned
    assert held_out >= 0.90, held_out
    assert empty_share(pictures) >= 0.90, empty_share(pictures)


@pytest.mark.parametrize("lang", ["en", "ru"])
def test_real_queries_keep_their_recall_at_the_default_cutoff(fresh_demo, lang: str) -> None:
    model, scenes, by_path = fresh_demo
    for kinds, seed, floor in ((world.TRAIN_KINDS, 11, 0.95), (world.HELD_OUT_PAIRS, 12, 0.85)):
        queries = world.make_queries(scenes, lang, 120, seed, kinds)
        recalls = []
        for text, relevant in zip(queries.texts, queries.relevant, strict=True):
            ranked = [by_path[hit.path] for hit in confident_text(model, text) or []]
            recalls.append(capped_recall_at_k(ranked, relevant, 5))
        assert np.mean(recalls) >= floor, (lang, kinds is world.TRAIN_KINDS, np.mean(recalls))


def test_an_in_collection_picture_is_a_confident_match_of_itself(fresh_demo) -> None:
    model, _, by_path = fresh_demo
    path = next(iter(by_path))
    hits = model.search_image(path, k=3, min_confidence=DEFAULT_CONFIDENCE)
    assert hits[0].path == path and hits[0].confidence == 1.0


def test_unreadable_queries_are_refused_with_the_reason(fresh_demo) -> None:
    model, _, _ = fresh_demo
    for text in (*UNREADABLE, "qwertyuiop", "xyzzy plugh"):
        with pytest.raises(ConfigError, match="the demo model knows none of these words"):
            model.search_text(text)
    assert model.search_text("красный круг", k=1)  # one known word is enough


def test_confidence_and_its_threshold_agree(fresh_demo) -> None:
    """A minimum confidence is a cosine cutoff for that query: exactly the hits whose
    confidence reaches it survive, in the same order as without it."""
    model, _, _ = fresh_demo
    for text in ("a red circle", "синие звёзды", "a dog on the beach"):
        everything = model.search_text(text, k=60)
        for floor in (0.0, 0.5, 0.9, DEFAULT_CONFIDENCE, 1.0):
            kept = model.search_text(text, k=60, min_confidence=floor)
            assert kept == [hit for hit in everything if hit.confidence >= floor][: len(kept)]
    for bad in (math.nan, math.inf, -0.1, 1.5):
        with pytest.raises(ConfigError, match="minimum confidence is a share between 0 and 1"):
            model.search_text("a red circle", min_confidence=bad)


def test_the_calibration_is_kept_and_measured_once(
    fresh_demo, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, _, _ = fresh_demo
    model.search_text("a red circle", k=1)
    path = model.collection.calibration_file(model.embedder.key)
    assert path.is_file()
    again = SearchModel(model.collection.dir, "demo")
    calls: list[int] = []
    real = again.embedder.embed_texts
    monkeypatch.setattr(again.embedder, "embed_texts", lambda t: calls.append(len(t)) or real(t))
    hits = again.search_text("a red circle", k=3)
    assert calls == [1]  # the query; the unrelated captions came from disk
    assert [h.confidence for h in hits] == [
        h.confidence for h in model.search_text("a red circle", k=3)
    ]
    again.close()


def test_a_damaged_calibration_is_measured_again(tmp_path: Path) -> None:
    from conftest import ColorEmbedder, make_image

    for colour in ("red", "green", "blue"):
        make_image(tmp_path / "album" / f"{colour}.png", colour)
    model = SearchModel(tmp_path / "c", ColorEmbedder())
    model.index([tmp_path / "album"])
    first = model.search_text("red", k=1)[0].confidence
    model.collection.calibration_file(model.embedder.key).write_bytes(b"PK\x03\x04 not a zip")
    fresh = SearchModel(tmp_path / "c", ColorEmbedder())
    assert fresh.search_text("red", k=1)[0].confidence == first
    fresh.close()
    model.close()


def test_the_inverse_of_confidence_is_exact() -> None:
    centroid = np.zeros(4)
    null = {"text": np.asarray([0.1, 0.2, 0.3, 0.4])}
    calibration = Calibration(centroid, null, 10)
    query = np.asarray([1.0, 0, 0, 0])
    assert calibration.threshold(query, 0.0, "text") == -1.0
    assert calibration.threshold(query, 0.5, "text") == pytest.approx(0.2)
    assert calibration.threshold(query, 1.0, "text") == pytest.approx(0.4)
    scores = np.asarray([0.15, 0.2, 0.39, 0.41])
    assert calibration.confidence(query, scores, "text").tolist() == [0.25, 0.5, 0.75, 1.0]


def test_every_shell_refuses_and_explains(
    fresh_demo, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI and the API say the library's sentences: an unreadable query, a bad cutoff,
    and an answerable-by-nothing query told apart from an empty collection."""
    from fastapi.testclient import TestClient

    from imgfinder.api import create_app
    from imgfinder.config import Settings
    from imgfinder.service import Service

    model, _, _ = fresh_demo
    where = str(model.collection.dir)

    def run(*args: str) -> tuple[int, str, str]:
        return cli_main(monkeypatch, capsys, *args)

    code, _, err = run("search", "qwertyuiop", "-c", where)
    assert code == 1 and err.startswith("error: the demo model knows none of these words")
    code, _, err = run("search", "a red circle", "-c", where, "--threshold", "nan")
    assert code == 1 and "minimum confidence is a share between 0 and 1" in err
    code, _, err = run("search", "a dog on the beach", "-c", where)
    assert code == 0 and err.startswith("no confident matches (the closest scores 0.")
    code, out, _ = run("search", "a dog on the beach", "-c", where, "--threshold", "0", "-k", "2")
    assert code == 0 and len(out.splitlines()) == 2 and "confidence" in out

    monkeypatch.setenv("IMGFINDER_INDEXES", str(model.collection.dir.parent))
    with TestClient(create_app(service=Service(Settings.from_env()))) as client:
        url = f"/collections/{model.collection.dir.name}/search"
        refused = client.get(url, params={"q": "红色的圆"})
        assert refused.status_code == 400
        assert refused.json()["error"].startswith("The demo model knows none of these words")
        for bad in ("nan", "inf", "1.5"):
            assert client.get(url, params={"q": "a red circle", "threshold": bad}).status_code in (
                400,
                422,
            )
        body = client.get(url, params={"q": "a dog on the beach"}).json()
        assert body["hits"] == [] and body["empty"] == "no_confident_match"
        assert 0 <= body["best_confidence"] < DEFAULT_CONFIDENCE
        found = client.get(url, params={"q": "a red circle", "k": 3}).json()["hits"]
        assert len(found) == 3 and all(h["confidence"] >= DEFAULT_CONFIDENCE for h in found)

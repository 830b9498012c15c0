"""A ruCLIP model chosen by its registry key, end to end through the CLI and the app.

A random-initialised stand-in in the original ruCLIP layout sits in a temporary model dir
under the folder name a download would use. The oracle embeds the same files with the same
model directly and scores them exactly; the CLI and the app must return those scores.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import page_scores
from streamlit.testing.v1 import AppTest
from test_cli import run
from test_ruclip import make_folder

from imgfinder.embedders.registry import create_embedder, get_model, repo_dir
from imgfinder.media.images import open_image

RUCLIP = "ruclip-vit-base-patch32-224"
QUERY = "красная кошка спит"
APP = str(Path(__file__).resolve().parents[1] / "app.py")
#: vectors are stored as float16, so stored scores differ from the oracle's by about 1e-3
SCORE_TOLERANCE = 5e-3

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("models")
    make_folder(repo_dir(str(get_model(RUCLIP).hf_repo), directory))
    return directory


@pytest.fixture(scope="module")
def oracle(model_dir: Path, album: Path) -> dict[str, float]:
    """Exact cosine score of every image for QUERY, computed by the torch model itself."""
    embedder = create_embedder(RUCLIP, model_dir=model_dir, runtime="torch")
    paths = sorted(album.iterdir())
    images = embedder.embed_images([open_image(p, target_size=embedder.image_size) for p in paths])
    scores = images @ embedder.embed_texts([QUERY])[0]
    return {path.name: float(score) for path, score in zip(paths, scores, strict=True)}


@pytest.fixture(scope="module")
def collection(model_dir: Path, album: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Indexed through the CLI with the ruCLIP key (automatic runtime: ONNX when available)."""
    target = tmp_path_factory.mktemp("indexes") / "ruclip"
    code, out, err = run(
        "index",
        str(album),
        "-c",
        str(target),
        "-m",
        RUCLIP,
        "--model-dir",
        str(model_dir),
        "--json",
    )
    assert code == 0, out + err
    assert json.loads(out)["indexed"] == 6
    return target


def assert_matches_oracle(scored: list[tuple[str, float]], oracle: dict[str, float]) -> None:
    assert sorted(name for name, _ in scored) == sorted(oracle)
    for name, score in scored:
        assert score == pytest.approx(oracle[name], abs=SCORE_TOLERANCE), name
    scores = [score for _, score in scored]
    assert scores == sorted(scores, reverse=True)


def test_cli_indexes_and_searches_with_ruclip(
    collection: Path, model_dir: Path, oracle: dict[str, float]
) -> None:
    code, out, err = run("info", "-c", str(collection), "--json")
    info = json.loads(out)
    assert code == 0 and info["model"] == RUCLIP, err
    assert all(key.startswith("ruclip:") for key in info["embedders"])

    code, out, err = run(
        "search",
        QUERY,
        "-c",
        str(collection),
        "--model-dir",
        str(model_dir),
        "-k",
        "10",
        "--scale",
        "cosine",
        "--threshold",
        "-1",
        "--json",
    )
    assert code == 0, err
    hits = json.loads(out)
    assert_matches_oracle([(Path(h["path"]).name, h["score"]) for h in hits], oracle)


def test_a_torch_collection_is_searched_with_torch(
    collection: Path,
    model_dir: Path,
    oracle: dict[str, float],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Indexed with --runtime torch, then searched with the automatic runtime: the vectors'
    own runtime is used, in the CLI and in the app."""
    target = tmp_path / "torch"
    album = Path(next(iter(json.loads(run("info", "-c", str(collection), "--json")[1])["roots"])))
    common = ["-c", str(target), "--model-dir", str(model_dir)]
    assert run("index", str(album), *common, "-m", RUCLIP, "--runtime", "torch")[0] == 0
    code, out, err = run(
        "search", QUERY, *common, "-k", "10", "--scale", "cosine", "--threshold", "-1", "--json"
    )
    assert code == 0, err
    assert_matches_oracle([(Path(h["path"]).name, h["score"]) for h in json.loads(out)], oracle)
    at = open_app(target, model_dir, monkeypatch)
    assert at.sidebar.selectbox(key="runtime").value == "auto"
    assert_matches_oracle(search_in_app(at), positive(oracle))


def open_app(collection: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("IMGFINDER_COLLECTION", str(collection))
    monkeypatch.setenv("IMGFINDER_INDEXES", str(collection.parent))
    monkeypatch.setenv("IMGFINDER_MODEL_DIR", str(model_dir))
    monkeypatch.delenv("IMGFINDER_EMBEDDER_FACTORY", raising=False)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def search_in_app(at: AppTest, model: str = RUCLIP, query: str = QUERY) -> list[tuple[str, float]]:
    """(name, score) of every card for `query`, with the cosine threshold at 0 and k at 10."""
    at.sidebar.radio(key="scale").set_value("cosine")
    at.run()
    at.sidebar.slider(key=f"threshold::{model}").set_value(0.0)
    at.sidebar.slider(key="k").set_value(10)
    at.text_input(key="text_query").input(query)
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return page_scores(at)


def positive(oracle: dict[str, float]) -> dict[str, float]:
    """What a threshold of 0 lets through."""
    return {name: score for name, score in oracle.items() if score >= 0}


def test_app_searches_with_the_ruclip_model(
    collection: Path, model_dir: Path, oracle: dict[str, float], monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_app(collection, model_dir, monkeypatch)
    model = next(s for s in at.sidebar.selectbox if s.key.startswith("model::"))
    assert model.value == RUCLIP
    assert_matches_oracle(search_in_app(at), positive(oracle))
    parity = next(c.value for c in at.main.caption if " agrees with " in c.value)
    assert parity.startswith("ONNX fp32 agrees with PyTorch: cosine image ")
    assert all(float(c) >= 0.9999 for c in re.findall(r"(?:image|text) ([\d.]+)", parity))


def test_cli_verifies_the_model_and_shows_int8_parity(model_dir: Path) -> None:
    code, out, err = run("models", "verify", RUCLIP, "--model-dir", str(model_dir))
    assert code == 0 and out.startswith(f"{RUCLIP}: ok (ruclip:"), out + err
    code, out, err = run(
        "models", "verify", RUCLIP, "--model-dir", str(model_dir), "--runtime", "onnx-int8"
    )
    assert code == 0, out + err
    cosines = [float(c) for c in re.findall(r"(?:image|text) ([\d.]+)", out)]
    assert "agrees with ONNX fp32: cosine image" in out and len(cosines) == 2
    assert all(0.9 < c <= 1.0 for c in cosines)
    code, out, err = run("models", "list", "--model-dir", str(model_dir), "--json")
    present = {row["key"] for row in json.loads(out) if row["present"]}
    assert code == 0 and {"demo", RUCLIP} <= present

"""`imgfinder eval` on labelled folders and query CSVs, exact and approximate indexers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ColorEmbedder, make_image
from typer.testing import CliRunner

from imgfinder import cli
from imgfinder.errors import ConfigError
from imgfinder.eval_run import evaluate, load_labelled


@pytest.fixture(autouse=True)
def color_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        "imgfinder.embedders.registry.create_embedder", lambda key, **_: ColorEmbedder()
    )


@pytest.fixture
def classes(tmp_path: Path) -> Path:
    root = tmp_path / "classes"
    for color in ("red", "green", "blue"):
        for number in range(4):
            make_image(root / color / f"{number}.png", color, seed=number)
    return root


def test_folder_per_class(classes: Path, tmp_path: Path) -> None:
    data = load_labelled(classes)
    assert data.classes == ["blue", "green", "red"] and len(data.relevant[0]) == 4
    results = evaluate(data, ["color"], ["exact", "hnsw"], workdir=tmp_path / "work")
    exact = results["color / exact"]
    assert exact["mAP"] == pytest.approx(1.0)
    assert exact["precision@1"] == 1.0 and exact["recall@10"] == 1.0
    assert exact["zero_shot_accuracy"] == 1.0 and exact["image_nn_accuracy"] == 1.0
    assert results["color / hnsw"]["recall@10_vs_exact"] >= 0.9


def test_queries_csv_and_cli(classes: Path, tmp_path: Path) -> None:
    queries = tmp_path / "queries.csv"
    queries.write_text(
        "query,relevant\nred,red/0.png;red/1.png\nred,red/2.png\nblue,blue/3.png\n"
        "green,red/0.png\n",
        encoding="utf-8",
    )
    out = tmp_path / "out.json"
    result = CliRunner().invoke(
        cli.app, ["eval", str(classes), "--queries", str(queries), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    row = json.loads(out.read_text())["demo / exact"]
    assert row["queries"] == 3
    # "green" has one wrong label: its AP is low, so mAP is clearly below 1
    assert 0.3 < row["mAP"] < 0.9
    assert "mAP" in result.stdout


def test_unlabelled_folder_is_refused(tmp_path: Path) -> None:
    make_image(tmp_path / "flat" / "a.png")
    with pytest.raises(ConfigError, match="sub-folder per class"):
        load_labelled(tmp_path / "flat")
    with pytest.raises(ConfigError, match="there is no folder at"):
        load_labelled(tmp_path / "no-such-folder")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no images under"):
        load_labelled(tmp_path / "empty")


def test_indexer_parameters_and_markdown_file(classes: Path, tmp_path: Path) -> None:
    out, table = tmp_path / "out.json", tmp_path / "table.md"
    args = ["eval", str(classes), "-i", "exact", "-i", "faiss", "-p", "faiss.factory=HNSW8"]
    args += ["-p", "faiss.efSearch=2", "--out", str(out), "--markdown", str(table)]
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    assert set(rows) == {"demo / exact", "demo / faiss(factory=HNSW8, efSearch=2)"}
    assert 0 < rows["demo / faiss(factory=HNSW8, efSearch=2)"]["recall@10_vs_exact"] <= 1
    lines = table.read_text().splitlines()
    assert lines[0].startswith("|") and "mAP" in lines[0]
    assert any("demo / faiss(factory=HNSW8, efSearch=2)" in line for line in lines)
    with pytest.raises(ConfigError, match="has no parameter"):
        evaluate(load_labelled(classes), ["c"], ["hnsw"], indexer_params={"hnsw": {"nope": 1}})

"""One answer in every shell: the same queries through the library, the facade, the CLI, the HTTP
API (in-process and on a real uvicorn) and the page return the same items with the same scores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import ColorEmbedder, free_port, make_image, page_scores, wait_until_up
from fastapi.testclient import TestClient
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

from imgfinder.api import create_app
from imgfinder.cli import app as cli
from imgfinder.config import Settings
from imgfinder.search import SearchModel
from imgfinder.service import Query, Selection, Service

ROOT = Path(__file__).resolve().parents[1]
FACTORY = "test_webapp:color_embedder"
TEXTS = ("red", "синий", "green yellow")
K = 5


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    base = tmp_path_factory.mktemp("congruence")
    album = base / "album"
    for color in ("red", "green", "blue", "yellow"):
        for number in range(4):
            make_image(album / f"{color}_{number}.png", color, seed=number)
    data = base / "data"
    model = SearchModel(data / "indexes" / "photos", ColorEmbedder())
    model.index([album])
    yield {"base": base, "album": album, "data": data, "model": model}
    model.close()


def pairs(hits) -> list[tuple[int, float, float | None]]:
    """(item id, score, confidence) of library Hits or of JSON hits."""
    rows = [h if isinstance(h, dict) else h.to_dict() for h in hits]
    return [
        (int(row["item_id"]), round(float(row["score"]), 5), row.get("confidence")) for row in rows
    ]


def library_answers(world: dict) -> dict[str, list[tuple[int, float]]]:
    model = world["model"]
    answers = {f"text:{q}": pairs(model.search_text(q, k=K, min_confidence=0)) for q in TEXTS}
    image = world["album"] / "blue_0.png"
    answers["image"] = pairs(model.search_image(image, k=K, min_confidence=0))
    first = answers["text:red"][0][0]
    answers["similar"] = pairs(model.similar(first, k=K, min_confidence=0))
    return answers


def test_every_shell_gives_the_library_s_answer(
    world: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = library_answers(world)
    first = expected["text:red"][0][0]
    image = world["album"] / "blue_0.png"
    monkeypatch.setenv("IMGFINDER_DATA_DIR", str(world["data"]))
    monkeypatch.setenv("IMGFINDER_EMBEDDER_FACTORY", FACTORY)
    settings = Settings.from_env()

    service = Service(settings)
    chosen = Selection(str(world["data"] / "indexes" / "photos"), "demo")
    facade = {f"text:{q}": service.find(chosen, Query.for_text(q), K, -1).hits for q in TEXTS}
    facade["image"] = service.find(chosen, Query.for_image(image.read_bytes()), K, -1).hits
    facade["similar"] = service.find(chosen, Query.like(first), K, -1).hits
    assert {key: pairs(hits) for key, hits in facade.items()} == expected
    service.close()

    def cli_json(*args: str) -> list[dict]:
        ran = CliRunner().invoke(
            cli, ["search", *args, "-c", "photos", "-k", str(K), "--json", "--threshold", "0"]
        )
        assert ran.exit_code == 0, ran.output
        return json.loads(ran.output)

    by_cli = {f"text:{q}": pairs(cli_json(q)) for q in TEXTS}
    by_cli["image"] = pairs(cli_json("--image", str(image)))
    assert by_cli == {key: value for key, value in expected.items() if key != "similar"}

    with TestClient(create_app(settings)) as client:
        assert http_answers(client.get, client.post, image, first) == expected

    with UvicornServer(world["data"]) as url, httpx.Client(base_url=url) as client:
        assert http_answers(client.get, client.post, image, first) == expected

    positive = [(i, score) for i, score, _ in expected["text:red"] if score >= 0]
    shown = [(name, round(score, 5)) for name, score in page_answer(monkeypatch, "red")]
    assert shown == named(world, positive)  # at the precision every shell is compared at


def http_answers(get, post, image: Path, first: int) -> dict[str, list[tuple[int, float]]]:
    base = "/collections/photos"
    params = {"k": K, "threshold": 0}
    answers = {
        f"text:{q}": pairs(get(f"{base}/search", params={"q": q, **params}).json()["hits"])
        for q in TEXTS
    }
    upload = {"file": ("q.png", image.read_bytes(), "image/png")}
    answers["image"] = pairs(
        post(f"{base}/search/image", files=upload, params=params).json()["hits"]
    )
    answers["similar"] = pairs(get(f"{base}/items/{first}/similar", params=params).json()["hits"])
    return answers


def named(world: dict, found: list[tuple[int, float]]) -> list[tuple[str, float]]:
    items = world["model"].collection.catalog.items(i for i, _ in found)
    return [(Path(items[i].path).name, score) for i, score in found]


def page_answer(monkeypatch: pytest.MonkeyPatch, query: str) -> list[tuple[str, float]]:
    monkeypatch.setenv("IMGFINDER_COLLECTION", "photos")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30)
    at.run()
    at.sidebar.slider(key="confidence").set_value(0.0)  # the closest anyway
    at.sidebar.slider(key="k").set_value(K)
    at.text_input(key="text_query").input(query)
    at.run()
    assert not at.exception, at.exception
    return page_scores(at)


class UvicornServer:
    """`imgfinder serve` in a process of its own, on a free loopback port."""

    def __init__(self, data: Path) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "IMGFINDER_DATA_DIR": str(data),
            "IMGFINDER_EMBEDDER_FACTORY": FACTORY,
            "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "imgfinder", "serve", "--port", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def __enter__(self) -> str:
        url = f"http://127.0.0.1:{self.port}"
        wait_until_up(f"{url}/health", self.process, 30)
        return url

    def __exit__(self, *exc_info: object) -> None:
        self.process.terminate()
        self.process.wait(10)

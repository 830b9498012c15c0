"""A multilingual open_clip model (XLM-RoBERTa text tower) picked by key, end to end.

The stand-in is the registry's `xlm-roberta-base-ViT-B-32` architecture with random weights and
a tiny XLM-RoBERTa config and tokenizer, laid out in a temporary model dir the way `imgfinder
models pull` leaves them (the text tower's files in the model dir's own Hugging Face cache).
Every step runs in a fresh process pointed only at that dir (IMGFINDER_MODEL_DIR; the default
Hugging Face cache is an empty folder, HF_HUB_OFFLINE=1): the oracle (the embedder itself,
exact scores), the CLI and the app must agree.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_models_end_to_end import assert_matches_oracle, positive
from tiny_tokenizers import vocab_size, xlm_roberta_files

from imgfinder.embedders.registry import get_model, hub_cache_dir, repo_dir

pytest.importorskip("torch")
pytest.importorskip("transformers")

MULTI = "xlm-roberta-base-vit-b-32"
QUERY = "красная машина ночью"
ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
TINY_XLMR = {
    "architectures": ["XLMRobertaModel"],
    "model_type": "xlm-roberta",
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 80,
    "type_vocab_size": 1,
    "pad_token_id": 1,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "layer_norm_eps": 1e-5,
}


def write_hub_files(hub: Path, repo_id: str, files: dict[str, str]) -> None:
    """Files laid out the way huggingface_hub caches a download (refs/main -> snapshot)."""
    commit = "0" * 40
    folder = hub / f"models--{repo_id.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (snapshot / name).write_text(text)


def python(script: str, env: dict[str, str], timeout: float = 300) -> str:
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a machine that has pulled the multilingual model (a stand-in)."""
    base = tmp_path_factory.mktemp("multilingual")
    models = base / "models"
    hub = hub_cache_dir(models)
    tokenizer = xlm_roberta_files()
    config = json.dumps(TINY_XLMR | {"vocab_size": vocab_size(tokenizer)})
    write_hub_files(hub, "xlm-roberta-base", {"config.json": config, **tokenizer})
    env = {
        **os.environ,
        "HF_HUB_CACHE": str(base / "empty-default-cache"),
        "HF_HUB_OFFLINE": "1",
        "IMGFINDER_MODEL_DIR": str(models),
    }
    env.pop("IMGFINDER_EMBEDDER_FACTORY", None)
    weights = repo_dir(str(get_model(MULTI).hf_repo), models) / "open_clip_model.safetensors"
    python(
        "import open_clip, torch\n"
        "from safetensors.torch import save_file\n"
        "torch.manual_seed(0)\n"
        f"model = open_clip.create_model({get_model(MULTI).architecture!r}, pretrained_hf=False)\n"
        f"target = __import__('pathlib').Path({str(weights)!r})\n"
        "target.parent.mkdir(parents=True)\n"
        "save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(target))\n",
        env | {"HF_HUB_CACHE": str(hub)},  # open_clip itself, outside imgfinder, reads it here
    )
    return env


@pytest.fixture(scope="module")
def oracle(stand_in: dict[str, str], album: Path) -> dict[str, float]:
    """Exact scores for QUERY from the embedder itself, on the images as the indexer opens them."""
    out = python(
        "import json\n"
        "from pathlib import Path\n"
        "from imgfinder.embedders.registry import create_embedder\n"
        "from imgfinder.media.images import open_image\n"
        f"e = create_embedder({MULTI!r}, runtime='torch')\n"
        f"paths = sorted(Path({str(album)!r}).iterdir())\n"
        "images = e.embed_images([open_image(p, target_size=e.image_size) for p in paths])\n"
        f"scores = images @ e.embed_texts([{QUERY!r}])[0]\n"
        "print(json.dumps({p.name: float(s) for p, s in zip(paths, scores)}))\n",
        stand_in,
    )
    return json.loads(out)


def imgfinder(env: dict[str, str], *args: str) -> str:
    command = [str(Path(sys.executable).with_name("imgfinder")), *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_stand_in_counts_as_present(stand_in: dict[str, str]) -> None:
    out = imgfinder(stand_in, "models", "list", "--json")
    present = {row["key"]: row["present"] for row in json.loads(out)}
    assert present[MULTI] is True


def test_cli_and_app_search_with_the_multilingual_model(
    stand_in: dict[str, str], album: Path, oracle: dict[str, float], tmp_path: Path
) -> None:
    """The automatic runtime (ONNX export of both towers) against the torch oracle."""
    runtime = "auto"
    collection = tmp_path / "indexes" / "multi"
    common = ["-c", str(collection), "-m", MULTI, "--runtime", runtime]
    summary = json.loads(imgfinder(stand_in, "index", str(album), *common, "--json"))
    assert summary["indexed"] == 6 and summary["skipped"] == 0
    exports = list(Path(stand_in["IMGFINDER_MODEL_DIR"], "onnx").glob("*/meta.json"))
    tokenizers = [json.loads(meta.read_text())["tokenizer"] for meta in exports]
    assert [t["kind"] for t in tokenizers] == ["hf-tokenizers"], "searching needs no torch"
    hits = json.loads(
        imgfinder(
            stand_in,
            "search",
            QUERY,
            *common,
            "-k",
            "10",
            "--scale",
            "cosine",
            "--threshold",
            "-1",
            "--json",
        )
    )
    assert_matches_oracle([(Path(h["path"]).name, h["score"]) for h in hits], oracle)

    env = stand_in | {
        "IMGFINDER_COLLECTION": str(collection),
        "IMGFINDER_INDEXES": str(collection.parent),
    }
    shown = json.loads(
        python(
            "import json\n"
            "from streamlit.testing.v1 import AppTest\n"
            f"at = AppTest.from_file({APP!r}, default_timeout=120)\n"
            "at.run()\n"
            "assert not at.exception, at.exception\n"
            "model = next(s for s in at.sidebar.selectbox if s.key.startswith('model::'))\n"
            f"assert model.value == {MULTI!r}, model.value\n"
            f"at.sidebar.selectbox(key='runtime').set_value({runtime!r})\n"
            "at.sidebar.radio(key='scale').set_value('cosine')\n"
            "at.run()\n"
            f"at.sidebar.slider(key='threshold::{MULTI}').set_value(0.0)\n"
            "at.sidebar.slider(key='k').set_value(10)\n"
            f"at.text_input(key='text_query').input({QUERY!r})\n"
            "at.run()\n"
            "assert not at.exception and not at.error, (at.exception, at.error)\n"
            "grid = next(iter(at.main.get('bidi_component')))\n"
            "tiles = json.loads(grid.proto.json)['tiles']\n"
            "print(json.dumps([(tile['full_name'], tile['score']) for tile in tiles]))\n",
            env,
        )
    )
    assert_matches_oracle([(name, score) for name, score in shown], positive(oracle))

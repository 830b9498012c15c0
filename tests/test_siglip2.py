"""SigLIP 2 chosen by its registry key, end to end through the CLI and the app.

The stand-in has SigLIP 2's shape at a tiny size: a timm ViT trunk with attention-pool (MAP)
head and no projection, open_clip's custom text tower without a causal mask pooling the last
token, a Gemma-like BPE tokenizer read through Hugging Face `transformers`. It sits in a
temporary model dir the way a download leaves the repo (open_clip_config.json, weights,
tokenizer files); the repo's own open_clip_config.json says what to build, as it does for the
real model. The oracle embeds the images with the torch model itself; the CLI (automatic
runtime: ONNX export of both towers) and the app must return its scores.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_cli import run
from test_models_end_to_end import assert_matches_oracle, open_app, positive, search_in_app
from tiny_tokenizers import gemma_files, vocab_size

from imgfinder.embedders.registry import create_embedder, get_model, repo_dir
from imgfinder.media.images import open_image

pytest.importorskip("timm")
pytest.importorskip("transformers")

SIGLIP2 = "siglip2-vit-b-16"
QUERY = "красная машина ночью"


def tiny_config(vocab: int) -> dict:
    """open_clip's ViT-B-16-SigLIP2 config with every size shrunk."""
    return {
        "embed_dim": 192,
        "init_logit_bias": -10,
        "custom_text": True,
        "vision_cfg": {
            "image_size": 224,
            "timm_model_name": "vit_tiny_patch16_224",
            "timm_model_pretrained": False,
            "timm_pool": "map",
            "timm_proj": "none",
        },
        "text_cfg": {
            "context_length": 64,
            "vocab_size": vocab,
            "hf_tokenizer_name": "timm/ViT-B-16-SigLIP2",
            "tokenizer_kwargs": {"clean": "canonicalize"},
            "width": 64,
            "heads": 2,
            "layers": 1,
            "no_causal_mask": True,
            "proj_bias": True,
            "pool_type": "last",
            "norm_kwargs": {"eps": 1e-6},
            "act_kwargs": {"approximate": "tanh"},
        },
    }


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import open_clip
    import torch
    from safetensors.torch import save_file

    directory = tmp_path_factory.mktemp("models")
    folder = repo_dir(str(get_model(SIGLIP2).hf_repo), directory)
    folder.mkdir(parents=True)
    tokenizer = gemma_files()
    for name, text in tokenizer.items():
        (folder / name).write_text(text)
    preprocess = {"mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bicubic"}
    (folder / "open_clip_config.json").write_text(
        json.dumps(
            {
                "model_cfg": tiny_config(vocab_size(tokenizer)),
                "preprocess_cfg": preprocess | {"resize_mode": "squash"},
            }
        )
    )
    torch.manual_seed(0)
    model = open_clip.create_model(f"local-dir:{folder}")
    weights = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    save_file(weights, str(folder / "open_clip_model.safetensors"))
    return directory


@pytest.fixture(scope="module")
def oracle(model_dir: Path, album: Path) -> dict[str, float]:
    """Exact cosine score of every image for QUERY, computed by the torch model itself."""
    embedder = create_embedder(SIGLIP2, model_dir=model_dir, runtime="torch")
    assert type(embedder.towers.text_tower.clip).__name__ == "CustomTextCLIP"
    paths = sorted(album.iterdir())
    images = embedder.embed_images([open_image(p, target_size=embedder.image_size) for p in paths])
    scores = images @ embedder.embed_texts([QUERY])[0]
    return {path.name: float(score) for path, score in zip(paths, scores, strict=True)}


def test_the_stand_in_is_present_and_verifies(model_dir: Path) -> None:
    code, out, err = run("models", "list", "--json", "--model-dir", str(model_dir))
    assert code == 0, err
    present = {row["key"]: row["present"] for row in json.loads(out)}
    assert present[SIGLIP2] is True
    code, out, err = run("models", "verify", SIGLIP2, "--model-dir", str(model_dir))
    assert code == 0 and out.startswith(f"{SIGLIP2}: ok (open_clip:ViT-B-16-SigLIP2:"), out + err
    cosines = [float(c) for c in re.findall(r"(?:image|text) ([\d.]+)", out)]
    assert len(cosines) == 2 and min(cosines) >= 0.9999, out
    int8 = ["--model-dir", str(model_dir), "--runtime", "onnx-int8"]
    code, out, err = run("models", "verify", SIGLIP2, *int8)
    assert code == 0 and "agrees with ONNX fp32: cosine image " in out, out + err
    cosines = [float(c) for c in re.findall(r"(?:image|text) ([\d.]+)", out)]
    assert len(cosines) == 2 and min(cosines) >= 0.99, out  # tiny random weights


def test_cli_and_app_search_with_siglip2(
    model_dir: Path,
    album: Path,
    oracle: dict[str, float],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    collection = tmp_path / "indexes" / "siglip2"
    common = ["-c", str(collection), "--model-dir", str(model_dir)]
    code, out, err = run("index", str(album), *common, "-m", SIGLIP2, "--json")
    assert code == 0, out + err
    assert json.loads(out)["indexed"] == 6
    code, out, err = run("info", "-c", str(collection), "--json")
    assert code == 0 and json.loads(out)["model"] == SIGLIP2, err
    assert all(key.endswith(":onnx-fp32") for key in json.loads(out)["embedders"])

    code, out, err = run(
        "search", QUERY, *common, "-k", "10", "--scale", "cosine", "--threshold", "-1", "--json"
    )
    assert code == 0, err
    assert_matches_oracle([(Path(h["path"]).name, h["score"]) for h in json.loads(out)], oracle)

    at = open_app(collection, model_dir, monkeypatch)
    model = next(s for s in at.sidebar.selectbox if s.key.startswith("model::"))
    assert model.value == SIGLIP2
    assert_matches_oracle(search_in_app(at, SIGLIP2, QUERY), positive(oracle))


def test_search_needs_no_torch_once_exported(model_dir: Path) -> None:
    """The export carries the tokenizer (tokenizers' JSON), so a query loads neither torch,
    open_clip nor transformers; its vector equals the torch model's."""
    reference = create_embedder(SIGLIP2, model_dir=model_dir, runtime="torch").embed_texts([QUERY])
    create_embedder(SIGLIP2, model_dir=model_dir).embed_texts(["export once"])
    script = (
        "import json, sys\n"
        "from imgfinder.embedders.registry import create_embedder\n"
        f"embedder = create_embedder({SIGLIP2!r}, model_dir={str(model_dir)!r})\n"
        f"vector = embedder.embed_texts([{QUERY!r}])\n"
        "heavy = [m for m in ('torch', 'open_clip', 'transformers') if m in sys.modules]\n"
        "print(json.dumps({'heavy': heavy, 'vector': vector[0].tolist()}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["heavy"] == []
    assert float(np.dot(found["vector"], reference[0])) > 0.9999

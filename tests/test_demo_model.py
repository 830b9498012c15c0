"""The shipped demo model: loads on both runtimes, meets its gates on a fresh world, trains."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from imgfinder.demo import acceptance, world
from imgfinder.embedders.families.demo import DEFAULT_MODEL_DIR, DemoEmbedder
from imgfinder.errors import ModelError

#: a test world no training run used (training uses seeds 0..3, the model card 20240604)
SEED = 777


@pytest.fixture(scope="module")
def onnx_embedder() -> DemoEmbedder:
    return DemoEmbedder()


@pytest.fixture(scope="module")
def torch_embedder() -> DemoEmbedder:
    pytest.importorskip("torch")
    return DemoEmbedder(runtime="torch")


@pytest.fixture(scope="module")
def metrics(onnx_embedder) -> dict:
    return acceptance.run(onnx_embedder, n_images=800, seed=SEED, n_queries=160)


def test_shipped_files_and_size():
    names = {p.name for p in DEFAULT_MODEL_DIR.iterdir()}
    assert {
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "image.onnx",
        "text.onnx",
    } <= names
    assert {"metrics.json", "README.md"} <= names
    assert (DEFAULT_MODEL_DIR / "model.safetensors").stat().st_size <= 10_000_000
    shipped = json.loads((DEFAULT_MODEL_DIR / "metrics.json").read_text())
    assert shipped["model"]["parameters"] <= 2_000_000


def flat(tree: dict, prefix: str = "") -> dict[str, float]:
    """{"a": {"b": 1}} as {"a.b": 1}, for comparing nested metrics."""
    out: dict[str, float] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out |= flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_the_model_card_metrics_are_these_weights(onnx_embedder):
    """metrics.json (and so the model card) re-measured from the shipped files."""
    from safetensors.numpy import load_file

    shipped = json.loads((DEFAULT_MODEL_DIR / "metrics.json").read_text())
    weights = load_file(str(DEFAULT_MODEL_DIR / "model.safetensors"))
    stored = sum(v.size for v in weights.values())  # parameters and normalisation buffers
    assert shipped["model"]["parameters"] <= stored <= 2_000_000
    test_set = shipped["test_set"]
    again = acceptance.run(onnx_embedder, n_images=test_set["images"], seed=test_set["seed"])
    for part in (*world.LANGUAGES, "cross_lingual", "image_to_image"):
        assert flat(again[part]) == pytest.approx(flat(shipped[part]), abs=1e-6), part
    assert all(gate["pass"] for gate in shipped["gates"].values())


def test_embedder_contract(onnx_embedder):
    e = onnx_embedder
    assert e.image_size == 64 and e.dim == 128
    assert e.key.startswith("demo-") and e.key.endswith("-onnx")
    scenes = world.make_dataset(3, SEED)
    vectors = e.embed_images([world.render(s, 100) for s in scenes])
    texts = e.embed_texts(["красная звезда", "a red star", ""])
    for out in (vectors, texts):
        assert out.dtype == np.float32 and out.shape == (3, e.dim)
        assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert e.embed_texts([]).shape == (0, e.dim)
    assert e.embed_images([]).shape == (0, e.dim)
    assert e.prepare_image(world.render(scenes[0], 200)).shape == (3, 64, 64)


def test_key_follows_runtime_and_weights(onnx_embedder, torch_embedder, tmp_path):
    assert torch_embedder.key.endswith("-torch")
    assert torch_embedder.key.rsplit("-", 1)[0] == onnx_embedder.key.rsplit("-", 1)[0]
    copy = tmp_path / "demo"
    shutil.copytree(DEFAULT_MODEL_DIR, copy)
    config = json.loads((copy / "config.json").read_text())
    config["extra"]["note"] = "changed"
    (copy / "config.json").write_text(json.dumps(config))
    assert DemoEmbedder(copy).key != onnx_embedder.key


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match=r"python -m imgfinder\.demo\.train"):
        DemoEmbedder(tmp_path)
    with pytest.raises(ModelError):
        DemoEmbedder(runtime="tensorflow")
    with pytest.raises(ModelError, match="fp32 only"):
        DemoEmbedder(runtime="onnx-int8")


def test_acceptance_gates_on_a_fresh_world(metrics):
    failed = {k: v for k, v in metrics["gates"].items() if not v["pass"]}
    assert not failed, failed
    for lang in world.LANGUAGES:
        assert metrics[lang]["template"]["mAP"] >= 0.90
        assert metrics[lang]["held_out_pairs"]["capped_recall@5"] >= 0.85


def test_onnx_matches_torch(onnx_embedder, torch_embedder):
    scenes = world.make_dataset(120, SEED + 1)
    result = acceptance.parity(onnx_embedder, torch_embedder, scenes, n_queries=80)
    assert result["max_abs_diff_image"] <= 1e-4
    assert result["max_abs_diff_text"] <= 1e-4
    assert result["top10_agreement"] >= 0.99


def test_english_and_russian_meet(onnx_embedder):
    en = onnx_embedder.embed_texts(["a photo of a red star", "two blue circles on white"])
    ru = onnx_embedder.embed_texts(["фото красной звезды", "два синих круга на белом фоне"])
    sims = en @ ru.T
    assert sims[0, 0] > sims[0, 1] and sims[1, 1] > sims[1, 0]


def test_speed_sanity(onnx_embedder):
    # loose bounds: the test machine may be busy; the real figures are in metrics.json
    result = acceptance.speed(onnx_embedder, repeats=2)
    assert result["texts_per_s_batch256"] >= 300
    assert result["images_per_s_batch256"] >= 200
    assert result["one_text_ms_median"] <= 50


def test_search_path_does_not_import_torch():
    code = (
        "import sys; from imgfinder.embedders.families.demo import DemoEmbedder; "
        "e = DemoEmbedder(); e.embed_texts(['red star']); "
        "import numpy as np; e.embed_prepared(np.zeros((1, 3, 64, 64), 'float32')); "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_training_smoke_run(tmp_path):
    pytest.importorskip("torch")
    from imgfinder.demo import train

    out = tmp_path / "model"
    metrics = train.main(
        [
            "--steps", "3", "--batch", "16", "--pool", "48", "--corpus", "1500",
            "--eval-images", "160", "--eval-queries", "20", "--log-every", "1",
            "--out", str(out),
        ]
    )  # fmt: skip
    embedder = DemoEmbedder(out)
    assert embedder.embed_texts(["зелёный круг"]).shape == (1, embedder.dim)
    assert metrics["parity"]["max_abs_diff_text"] <= 1e-4
    assert (out / "README.md").read_text().startswith("# ")
    assert json.loads((out / "metrics.json").read_text())["training"]["steps"] == 3


def test_training_is_deterministic():
    torch = pytest.importorskip("torch")
    from imgfinder.demo import train

    args = ["--steps", "2", "--batch", "8", "--pool", "16", "--corpus", "400", "--log-every", "5"]
    first = train.train(train.parse_args(args))["model"].state_dict()
    second = train.train(train.parse_args(args))["model"].state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)

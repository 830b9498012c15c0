"""OpenClipEmbedder on a tiny random open_clip config: the real code path, no downloads."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgfinder.embedders.families.openclip import OpenClipEmbedder
from imgfinder.embedders.preprocess import Preprocess
from imgfinder.embedders.towers import trim_padding
from imgfinder.errors import ModelError

pytest.importorskip("open_clip")

TINY = "imgfinder-tiny"
TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1},
}
TEXTS = ["a red car", "красная машина", "", "a long caption that will be cut " * 5]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Registers the tiny architecture with open_clip and returns its name."""
    import open_clip

    path = tmp_path_factory.mktemp("configs") / f"{TINY}.json"
    path.write_text(json.dumps(TINY_CONFIG))
    open_clip.add_model_config(path)
    return TINY


def random_model(name: str, seed: int, **kwargs: object) -> object:
    import open_clip
    import torch

    torch.manual_seed(seed)
    return open_clip.create_model(name, **kwargs).eval()


def save_weights(model: object, path: Path) -> Path:
    import torch
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in model.state_dict().items()}  # type: ignore[attr-defined]
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


def images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    sizes = [(50, 70), (90, 40), (32, 32), (17, 23), (101, 99)]
    out = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]
    out.append(Image.new("RGBA", (40, 60), (255, 0, 0, 128)))
    return out


def test_import_and_construction_are_light() -> None:
    code = (
        "import sys\n"
        "from imgfinder.embedders.families.openclip import OpenClipEmbedder\n"
        "e = OpenClipEmbedder('ViT-B-32', 'laion2b_s34b_b79k', runtime='onnx')\n"
        "assert e.key == 'open_clip:ViT-B-32:laion2b_s34b_b79k:onnx-fp32', e.key\n"
        "assert 'torch' not in sys.modules and 'open_clip' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_shapes_normalisation_and_determinism(tiny: str) -> None:
    first, second = OpenClipEmbedder(tiny), OpenClipEmbedder(tiny)
    vectors = first.embed_images(images())
    texts = first.embed_texts(TEXTS)
    assert vectors.shape == (6, 32) and texts.shape == (4, 32)
    assert vectors.dtype == texts.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
    assert first.dim == 32 and first.image_size == 32
    np.testing.assert_array_equal(second.embed_images(images()), vectors)
    np.testing.assert_array_equal(second.embed_texts(TEXTS), texts)
    np.testing.assert_allclose(first.embed_texts(TEXTS[:1]), texts[:1], atol=1e-6)
    assert first.embed_images([]).shape == (0, 32)
    assert first.embed_texts([]).shape == (0, 32)
    assert first.key == f"open_clip:{tiny}:random-seed0:torch-fp32"


def test_matches_open_clip_reference(tiny: str) -> None:
    """Our preprocessing and padding-trimmed text path reproduce open_clip's own pipeline.

    RGB images only: we composite transparency onto white where open_clip drops alpha.
    """
    import open_clip
    import torch

    embedder = OpenClipEmbedder(tiny)
    embedder.embed_texts(["warm up"])
    model = embedder.towers.image_tower.clip
    _, _, preprocess = open_clip.create_model_and_transforms(tiny)
    rgb = images()[:-1]
    for image in rgb:
        ours = embedder.prepare_image(image)
        theirs = preprocess(image).numpy()
        np.testing.assert_allclose(ours, theirs, atol=1e-5)
    tokenizer = open_clip.get_tokenizer(tiny)
    with torch.inference_mode():
        reference = model.encode_text(tokenizer(TEXTS), normalize=True).numpy()
        pixels = torch.from_numpy(np.stack([preprocess(i).numpy() for i in rgb]))
        reference_images = model.encode_image(pixels, normalize=True).numpy()
    np.testing.assert_allclose(embedder.embed_texts(TEXTS), reference, atol=1e-5)
    np.testing.assert_allclose(embedder.embed_images(rgb), reference_images, atol=1e-5)


@pytest.mark.parametrize(
    ("mode", "interpolation"), [("squash", "bicubic"), ("shortest", "bilinear")]
)
def test_other_preprocessing_modes(tiny: str, mode: str, interpolation: str) -> None:
    import open_clip

    _, _, reference = open_clip.create_model_and_transforms(
        tiny, image_resize_mode=mode, image_interpolation=interpolation, image_mean=(0.5,) * 3
    )
    ours = Preprocess(32, (0.5,) * 3, open_clip.OPENAI_DATASET_STD, interpolation, mode)
    for image in images()[:-1]:
        np.testing.assert_allclose(ours(image), reference(image).numpy(), atol=1e-5)


def test_trim_padding() -> None:
    tokens = np.array([[5, 7, 9, 0, 0, 0], [5, 0, 9, 3, 0, 0]])
    np.testing.assert_array_equal(trim_padding(tokens), tokens[:, :4])
    assert trim_padding(np.zeros((2, 5), dtype=np.int64)).shape == (2, 1)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_weights_file_round_trip(tiny: str, tmp_path: Path, suffix: str) -> None:
    model = random_model(tiny, seed=7)
    path = save_weights(model, tmp_path / f"weights{suffix}")
    embedder = OpenClipEmbedder(tiny, path)
    import torch

    pixels = np.stack([embedder.prepare_image(i) for i in images()])
    with torch.inference_mode():
        expected = model.encode_image(torch.from_numpy(pixels), normalize=True).numpy()
    np.testing.assert_allclose(embedder.embed_prepared(pixels), expected, atol=1e-6)
    assert embedder.key.startswith(f"open_clip:{tiny}:file-")

    other = random_model(tiny, seed=8)
    other_path = save_weights(other, tmp_path / f"other{suffix}")
    assert OpenClipEmbedder(tiny, other_path).key != embedder.key
    assert OpenClipEmbedder(tiny, path, runtime="onnx").key != embedder.key


def test_local_dir(tiny: str, tmp_path: Path) -> None:
    model = random_model(tiny, seed=3)
    save_weights(model, tmp_path / "open_clip_model.safetensors")
    config = {"model_cfg": TINY_CONFIG, "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3}}
    (tmp_path / "open_clip_config.json").write_text(json.dumps(config))
    embedder = OpenClipEmbedder(tiny, f"local-dir:{tmp_path}")
    vectors = embedder.embed_texts(TEXTS)
    assert embedder.mean == (0.5, 0.5, 0.5)
    assert embedder.key.startswith(f"open_clip:{tiny}:dir-")
    reference = OpenClipEmbedder(tiny, save_weights(model, tmp_path / "w.safetensors"))
    np.testing.assert_allclose(vectors, reference.embed_texts(TEXTS), atol=1e-6)


def test_pretrained_tag_from_models_dir(
    tiny: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tag's weights are found in models_dir() and its preprocessing and QuickGELU apply."""
    import open_clip

    cfg = {"hf_hub": "someorg/tiny-clip/", "mean": (0.5,) * 3, "std": (0.25,) * 3}
    cfg |= {"interpolation": "bicubic", "resize_mode": "shortest", "quick_gelu": True}
    real = open_clip.get_pretrained_cfg
    monkeypatch.setattr(
        open_clip,
        "get_pretrained_cfg",
        lambda arch, tag: cfg if (arch, tag) == (tiny, "tinytag") else real(arch, tag),
    )
    model = random_model(tiny, seed=5, force_quick_gelu=True)
    folder = tmp_path / "someorg--tiny-clip"
    folder.mkdir()
    save_weights(model, folder / "open_clip_model.safetensors")

    embedder = OpenClipEmbedder(tiny, "tinytag", cache_dir=tmp_path)
    assert embedder.key == f"open_clip:{tiny}:tinytag:torch-fp32"
    assert embedder.std == (0.25, 0.25, 0.25)
    import torch

    tokens = open_clip.get_tokenizer(tiny)(TEXTS)
    with torch.inference_mode():
        expected = model.encode_text(tokens, normalize=True).numpy()
    np.testing.assert_allclose(embedder.embed_texts(TEXTS), expected, atol=1e-6)


def test_missing_weights_fail_fast_with_a_clear_sentence(tiny: str, tmp_path: Path) -> None:
    started = time.perf_counter()
    embedder = OpenClipEmbedder("ViT-B-32", "laion2b_s34b_b79k", cache_dir=tmp_path)
    with pytest.raises(ModelError) as caught:
        embedder.embed_texts(["x"])
    message = str(caught.value)
    assert "open_clip_model.safetensors" in message
    assert "huggingface.co/laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in message
    assert str(tmp_path / "laion--CLIP-ViT-B-32-laion2B-s34B-b79K") in message
    assert "\n" not in message
    assert time.perf_counter() - started < 20


def test_bad_inputs_raise_model_error(tiny: str, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no architecture"):
        OpenClipEmbedder("No-Such-Arch").embed_texts(["x"])
    with pytest.raises(ModelError, match="tags:"):
        OpenClipEmbedder("ViT-B-32", "no-such-tag").embed_texts(["x"])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot load"):
        OpenClipEmbedder(tiny, garbage).embed_texts(["x"])
    with pytest.raises(ModelError, match=r"open_clip_config\.json"):
        _ = OpenClipEmbedder(tiny, f"local-dir:{tmp_path}").key


def test_torch_free_tokenizer_matches_open_clip(tiny: str) -> None:
    import random

    import open_clip
    from open_clip.tokenizer import default_bpe

    from imgfinder.embedders.tokenizers.clip_bpe import TOKENIZER_CHECKS, ClipBpeTokenizer

    rng = random.Random(0)
    alphabet = "abcxyzABZ019 .,!?'’&;<>-_абвгдёжяАБЯ🙂🐙中文ελ\t\n"
    texts = [*TOKENIZER_CHECKS, "it's I'LL don't", "&lt;b&gt; &amp;amp;", "a<end_of_text>b"]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 90))) for _ in range(300)]
    for length in (77, 16):
        reference = open_clip.get_tokenizer(tiny, context_length=length)(texts).numpy()
        np.testing.assert_array_equal(ClipBpeTokenizer(default_bpe(), length)(texts), reference)


def test_weights_digest_is_remembered_beside_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A big checkpoint is hashed once, not at every start: the digest is noted beside it."""
    import hashlib

    from imgfinder.embedders import towers

    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"first weights")
    expected = hashlib.sha256(b"first weights").hexdigest()
    assert towers.file_digest(weights) == expected
    assert (tmp_path / "model.safetensors.sha256").is_file()

    monkeypatch.setattr(towers, "_digests", {})  # a new process
    real_open = open

    def no_reading_weights(path, *args, **kwargs):
        assert Path(path) != weights.resolve(), "hashed again"
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", no_reading_weights)
    assert towers.file_digest(weights) == expected
    monkeypatch.setattr("builtins.open", real_open)

    weights.write_bytes(b"other weights, other size")
    assert towers.file_digest(weights) == hashlib.sha256(b"other weights, other size").hexdigest()


def test_a_repo_builds_from_its_own_config_only_with_the_checkpoint_we_found(
    tmp_path: Path,
) -> None:
    """Else open_clip would load another file than the one we checked (or none: random)."""
    from imgfinder.embedders.families.openclip import builds_from_repo_config

    weights = tmp_path / "open_clip_model.safetensors"
    weights.write_bytes(b"x")
    assert not builds_from_repo_config(tmp_path, weights)  # no open_clip_config.json
    (tmp_path / "open_clip_config.json").write_text("{}")
    assert builds_from_repo_config(tmp_path, weights)
    assert not builds_from_repo_config(tmp_path, tmp_path / "epoch_32.pt")


def test_branchy_towers_are_fused_for_inference() -> None:
    """MobileCLIP's FastViT blocks fold into single convolutions: same vectors, fewer ops."""
    timm = pytest.importorskip("timm")
    import torch

    from imgfinder.embedders.families.openclip import fused

    torch.manual_seed(0)
    tower = timm.create_model("fastvit_t8", num_classes=8).eval()
    pixels = torch.rand(2, 3, 64, 64)
    layers = len(list(tower.modules()))
    with torch.no_grad():
        before = tower(pixels)
        folded = fused(tower)
        after = folded(pixels)
    assert len(list(folded.modules())) < layers * 0.8
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)
    linear = torch.nn.Linear(2, 2)
    assert fused(linear) is linear  # nothing to fold: the model as it is

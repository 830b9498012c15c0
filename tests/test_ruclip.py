"""ruCLIP loading: a tiny random model saved in the original ruCLIP layout, checked against an
independent re-computation of ruCLIP's forward pass from its weights."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgfinder.embedders.families.ruclip import RuClipEmbedder
from imgfinder.embedders.tokenizers.yttm import SPACE
from imgfinder.errors import ModelError

torch = pytest.importorskip("torch")
F = torch.nn.functional

ALPHABET = "кошаспитнвдеуrdcayb0123456789,.!?"
CONFIG = {
    "embed_dim": 32,
    "image_resolution": 32,
    "vision_layers": 2,
    "vision_width": 64,
    "vision_patch_size": 8,
    "context_length": 16,
    "vocab_size": 4 + 1 + len(ALPHABET) + 2,
    "transformer_width": 64,
    "transformer_heads": 2,
    "transformer_layers": 2,
}
TEXTS = ["Кошка спит на диване", "a red cat!", "", "кошка " * 30, "кот ест 🐟"]


def write_bpe(path: Path) -> None:
    """A small YouTokenToMe model file: ▁=4, the alphabet, two merges (к+о, ▁+ко)."""
    alphabet = {chr(SPACE): 4} | {char: 5 + i for i, char in enumerate(ALPHABET)}
    ko = len(alphabet) + 4
    rules = [(alphabet["к"], alphabet["о"], ko), (4, ko, ko + 1)]
    lines = [f"{len(alphabet)} {len(rules)}"]
    lines += [f"{ord(char)} {token}" for char, token in alphabet.items()]
    lines += [" ".join(map(str, rule)) for rule in rules]
    lines.append("1 0 2 3")
    path.write_text("\n".join(lines) + "\n")


def original_state_dict(seed: int) -> dict[str, object]:
    """Random weights under the key names and shapes of ruCLIP's own CLIP module."""
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape: int, scale: float = 0.05) -> object:
        return torch.randn(*shape, generator=generator) * scale

    def block(prefix: str, width: int) -> dict[str, object]:
        return {
            f"{prefix}.attn.in_proj_weight": rand(3 * width, width, scale=width**-0.5),
            f"{prefix}.attn.in_proj_bias": rand(3 * width),
            f"{prefix}.attn.out_proj.weight": rand(width, width, scale=width**-0.5),
            f"{prefix}.attn.out_proj.bias": rand(width),
            f"{prefix}.ln_1.weight": 1 + rand(width),
            f"{prefix}.ln_1.bias": rand(width),
            f"{prefix}.mlp.c_fc.weight": rand(4 * width, width, scale=width**-0.5),
            f"{prefix}.mlp.c_fc.bias": rand(4 * width),
            f"{prefix}.mlp.c_proj.weight": rand(width, 4 * width, scale=(4 * width) ** -0.5),
            f"{prefix}.mlp.c_proj.bias": rand(width),
            f"{prefix}.ln_2.weight": 1 + rand(width),
            f"{prefix}.ln_2.bias": rand(width),
        }

    c = CONFIG
    vw, tw, grid = c["vision_width"], c["transformer_width"], 32 // c["vision_patch_size"]
    state = {
        "visual.class_embedding": rand(vw, scale=vw**-0.5),
        "visual.positional_embedding": rand(grid * grid + 1, vw, scale=vw**-0.5),
        "visual.proj": rand(vw, c["embed_dim"], scale=vw**-0.5),
        "visual.conv1.weight": rand(vw, 3, c["vision_patch_size"], c["vision_patch_size"]),
        "visual.ln_pre.weight": 1 + rand(vw),
        "visual.ln_pre.bias": rand(vw),
        "visual.ln_post.weight": 1 + rand(vw),
        "visual.ln_post.bias": rand(vw),
        "positional_embedding": rand(c["context_length"], tw, scale=0.01),
        "text_projection": rand(tw, c["embed_dim"], scale=tw**-0.5),
        "logit_scale": torch.tensor(4.6052),
        "token_embedding.weight": rand(c["vocab_size"], tw, scale=0.02),
        "ln_final.weight": 1 + rand(tw),
        "ln_final.bias": rand(tw),
    }
    for i in range(c["vision_layers"]):
        state |= block(f"visual.transformer.resblocks.{i}", vw)
    for i in range(c["transformer_layers"]):
        state |= block(f"transformer.resblocks.{i}", tw)
    return state


# -- ruCLIP's forward pass, recomputed from the weights (the oracle) -------------------------


def _norm(x: object, state: dict, name: str) -> object:
    return F.layer_norm(x, x.shape[-1:], state[f"{name}.weight"], state[f"{name}.bias"], 1e-5)


def _block(x: object, state: dict, prefix: str, heads: int, mask: object | None) -> object:
    batch, length, width = x.shape
    h = _norm(x, state, f"{prefix}.ln_1")
    qkv = h @ state[f"{prefix}.attn.in_proj_weight"].T + state[f"{prefix}.attn.in_proj_bias"]
    q, k, v = (
        t.reshape(batch, length, heads, width // heads).transpose(1, 2) for t in qkv.chunk(3, -1)
    )
    scores = q @ k.transpose(-1, -2) / (width // heads) ** 0.5
    if mask is not None:
        scores = scores + mask
    mixed = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, length, width)
    out = mixed @ state[f"{prefix}.attn.out_proj.weight"].T + state[f"{prefix}.attn.out_proj.bias"]
    x = x + out
    h = _norm(x, state, f"{prefix}.ln_2")
    h = h @ state[f"{prefix}.mlp.c_fc.weight"].T + state[f"{prefix}.mlp.c_fc.bias"]
    h = h * torch.sigmoid(1.702 * h)  # QuickGELU
    return x + h @ state[f"{prefix}.mlp.c_proj.weight"].T + state[f"{prefix}.mlp.c_proj.bias"]


def reference_image(state: dict, pixels: np.ndarray) -> np.ndarray:
    x = F.conv2d(torch.from_numpy(pixels), state["visual.conv1.weight"], stride=8)
    x = x.flatten(2).transpose(1, 2)
    cls = state["visual.class_embedding"].expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], 1) + state["visual.positional_embedding"]
    x = _norm(x, state, "visual.ln_pre")
    for i in range(CONFIG["vision_layers"]):
        x = _block(
            x, state, f"visual.transformer.resblocks.{i}", CONFIG["vision_width"] // 64, None
        )
    out = _norm(x[:, 0], state, "visual.ln_post") @ state["visual.proj"]
    return F.normalize(out, dim=-1).numpy()


def reference_text(state: dict, ids: np.ndarray) -> np.ndarray:
    tokens = torch.from_numpy(ids)
    x = state["token_embedding.weight"][tokens] + state["positional_embedding"]
    length = tokens.shape[1]
    mask = torch.full((length, length), float("-inf")).triu(1)
    for i in range(CONFIG["transformer_layers"]):
        x = _block(x, state, f"transformer.resblocks.{i}", CONFIG["transformer_heads"], mask)
    x = _norm(x, state, "ln_final")
    eos = (tokens == 3).nonzero()[:, 1]
    out = x[torch.arange(len(tokens)), eos] @ state["text_projection"]
    return F.normalize(out, dim=-1).numpy()


# -- fixtures and tests ------------------------------------------------------------------


def make_folder(path: Path, seed: int = 0, state: dict | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(CONFIG))
    write_bpe(path / "bpe.model")
    torch.save(state or original_state_dict(seed), path / "pytorch_model.bin")
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_folder(tmp_path_factory.mktemp("ruclip") / "ai-forever--ruclip-tiny")


def pictures() -> list[Image.Image]:
    rng = np.random.default_rng(1)
    return [
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        for w, h in [(64, 48), (30, 90), (32, 32), (33, 31)]
    ]


def test_loads_strictly_and_matches_the_original_forward(folder: Path) -> None:
    embedder = RuClipEmbedder(folder)
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    pixels = np.stack([embedder.prepare_image(image) for image in pictures()])
    images = embedder.embed_prepared(pixels)
    np.testing.assert_allclose(images, reference_image(state, pixels), atol=2e-5)
    tokens = embedder.tokenize(TEXTS)
    np.testing.assert_allclose(
        embedder.embed_texts(TEXTS), reference_text(state, tokens), atol=2e-5
    )
    assert images.shape == (4, 32) and embedder.dim == 32 and embedder.image_size == 32
    assert tokens[0, 0] == 2 and (tokens == 3).sum(axis=1).tolist() == [1] * len(TEXTS)
    assert embedder.key.startswith("ruclip:ruclip-tiny:") and embedder.key.endswith(":torch-fp32")


def test_preprocessing_matches_ruclip_transform(folder: Path) -> None:
    transforms = pytest.importorskip("torchvision.transforms")
    embedder = RuClipEmbedder(folder)
    reference = transforms.Compose(
        [
            transforms.RandomResizedCrop(32, scale=(1.0, 1.0), ratio=(1.0, 1.0)),
            transforms.ToTensor(),
            transforms.Normalize(embedder.mean, embedder.std),
        ]
    )
    for image in pictures():
        np.testing.assert_allclose(embedder.prepare_image(image), reference(image), atol=1e-5)


def test_key_follows_the_weights(folder: Path, tmp_path: Path) -> None:
    other = make_folder(tmp_path / "ruclip-tiny", seed=1)
    assert RuClipEmbedder(other).key != RuClipEmbedder(folder).key
    assert RuClipEmbedder(folder, runtime="onnx").key != RuClipEmbedder(folder).key


def test_mismatched_weights_are_refused(tmp_path: Path) -> None:
    state = original_state_dict(0)
    del state["ln_final.bias"]
    broken = make_folder(tmp_path / "missing", state=state)
    with pytest.raises(ModelError, match=r"missing \[ln_final\.bias\]"):
        RuClipEmbedder(broken).embed_texts(["кошка"])
    state = original_state_dict(0) | {"extra.weight": torch.zeros(1)}
    with pytest.raises(ModelError, match=r"unexpected \[extra\.weight\]"):
        RuClipEmbedder(make_folder(tmp_path / "extra", state=state)).embed_texts(["кошка"])
    state = original_state_dict(0)
    state["ln_final.bias"] = torch.zeros(state["ln_final.bias"].shape[0] + 1)
    with pytest.raises(ModelError, match=r"does not fit .*ln_final\.bias"):
        RuClipEmbedder(make_folder(tmp_path / "shape", state=state)).embed_texts(["кошка"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="config"):
        RuClipEmbedder(tmp_path / "empty").embed_texts(["кошка"])


def test_onnx_runtime_matches_torch_and_runs_without_torch(folder: Path, tmp_path: Path) -> None:
    onnx_dir = tmp_path / "onnx"
    reference = RuClipEmbedder(folder)
    embedder = RuClipEmbedder(folder, runtime="onnx", onnx_dir=onnx_dir)
    cosine = (embedder.embed_texts(TEXTS) * reference.embed_texts(TEXTS)).sum(1)
    assert cosine.min() > 0.9999
    cosine = (embedder.embed_images(pictures()) * reference.embed_images(pictures())).sum(1)
    assert cosine.min() > 0.9999
    assert min(embedder.parity.values()) >= 0.9999
    code = (
        "import sys\n"
        "from imgfinder.embedders.families.ruclip import RuClipEmbedder\n"
        f"e = RuClipEmbedder({str(folder)!r}, runtime='onnx', onnx_dir={str(onnx_dir)!r})\n"
        "assert e.embed_texts(['кошка']).shape == (1, 32)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)

"""ONNX export and runtime on a tiny random open_clip model: parity, caching, int8, keys."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgfinder.embedders import export, onnx_runtime
from imgfinder.embedders.families.openclip import OpenClipEmbedder
from imgfinder.embedders.framing import PaddedEmbedder
from imgfinder.errors import ModelError

pytest.importorskip("open_clip")
onnx = pytest.importorskip("onnx")

TINY = "imgfinder-tiny-onnx"
TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1},
}
TEXTS = ["a dog", "собака бежит по траве", "", "a long caption " * 10, "x"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> str:
    import open_clip

    path = tmp_path_factory.mktemp("configs") / f"{TINY}.json"
    path.write_text(json.dumps(TINY_CONFIG))
    open_clip.add_model_config(path)
    return TINY


@pytest.fixture(scope="module")
def exported(tiny: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An onnx cache root holding the fp32 and int8 export of the tiny model."""
    root = tmp_path_factory.mktemp("onnx")
    OpenClipEmbedder(tiny, runtime="onnx-int8", onnx_dir=root).embed_texts(["warm up"])
    return root


def pictures() -> list[Image.Image]:
    rng = np.random.default_rng(2)
    return [
        Image.fromarray(rng.integers(0, 256, (40 + 7 * i, 50, 3), dtype=np.uint8)) for i in range(5)
    ]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1)


def test_fp32_matches_torch(tiny: str, exported: Path) -> None:
    torch_embedder = OpenClipEmbedder(tiny)
    embedder = OpenClipEmbedder(tiny, runtime="onnx", onnx_dir=exported)
    assert (
        cosines(embedder.embed_images(pictures()), torch_embedder.embed_images(pictures())).min()
        > 0.9999
    )
    for batch in (TEXTS, TEXTS[:1], TEXTS[2:3]):  # varying batch and trimmed lengths
        ours, reference = embedder.embed_texts(batch), torch_embedder.embed_texts(batch)
        assert cosines(ours, reference).min() > 0.9999
    assert embedder.parity["image"] >= 0.9999 and embedder.parity["text"] >= 0.9999
    assert embedder.dim == 32 and embedder.image_size == 32


def test_int8_parity_is_measured_and_reported(tiny: str, exported: Path) -> None:
    fp32 = OpenClipEmbedder(tiny, runtime="onnx", onnx_dir=exported)
    int8 = OpenClipEmbedder(tiny, runtime="onnx-int8", onnx_dir=exported)
    measured = cosines(int8.embed_texts(TEXTS), fp32.embed_texts(TEXTS)).min()
    print(f"int8 parity on the tiny random model: stored {int8.parity}, texts {measured:.4f}")
    assert set(int8.parity) == {"image", "text"}
    assert min(int8.parity.values()) > 0.9  # tiny random weights; real models are reported
    assert measured > 0.9
    assert 0.0 < int8.top10_overlap <= 1.0 and fp32.top10_overlap is None
    said = onnx_runtime.parity_summary("onnx-int8", int8.parity, int8.top10_overlap)
    assert said.endswith("of its top-10 results the same")


def test_top10_overlap_counts_shared_results() -> None:
    rng = np.random.default_rng(0)
    gallery, tokens = rng.normal(size=(30, 8)).astype(np.float32), np.arange(3)[:, None]

    class Towers:
        def __init__(self, noise: float) -> None:
            self.images = gallery + noise * rng.normal(size=gallery.shape).astype(np.float32)

        def image(self, batch: np.ndarray) -> np.ndarray:
            return self.images

        def text(self, ids: np.ndarray) -> np.ndarray:
            return gallery[ids[:, 0]]

    same = Towers(0.0)
    assert export.top10_overlap(same, same, gallery, tokens) == 1.0
    shaken = export.top10_overlap(same, Towers(0.5), gallery, tokens)
    assert 0.3 < shaken < 0.95


def test_keys_name_runtime_and_precision(tiny: str) -> None:
    keys = {OpenClipEmbedder(tiny, runtime=r).key for r in ("torch", "onnx", "onnx-int8")}
    assert keys == {
        f"open_clip:{tiny}:random-seed0:torch-fp32",
        f"open_clip:{tiny}:random-seed0:onnx-fp32",
        f"open_clip:{tiny}:random-seed0:onnx-int8",
    }


def test_export_layout_and_metadata(tiny: str, exported: Path) -> None:
    source = OpenClipEmbedder(tiny).source_key
    directory = onnx_runtime.export_dir(source, exported)
    meta = json.loads((directory / "meta.json").read_text())
    assert meta["source"] == source and meta["opset"] == 17 and meta["dynamic_sequence"]
    assert set(meta["files"]) == {"fp32", "int8"} and meta["preprocess"]["size"] == 32
    model = onnx.load(str(directory / "text.onnx"))
    assert {o.version for o in model.opset_import if o.domain in ("", "ai.onnx")} == {17}
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "sequence"]
    assert not list(exported.glob(".*.tmp"))
    assert meta["tokenizer"] == {
        "kind": "clip-bpe",
        "file": "clip_bpe_vocab.txt.gz",
        "context_length": 16,
    }
    assert (directory / "clip_bpe_vocab.txt.gz").is_file()


def test_cached_export_searches_without_torch(tiny: str, exported: Path) -> None:
    """With towers and tokenizer in the export, embedding texts and images needs no torch."""
    expected = OpenClipEmbedder(tiny, runtime="onnx", onnx_dir=exported).embed_texts(TEXTS)
    code = (
        "import sys, json, numpy as np\n"
        "from imgfinder.embedders.families.openclip import OpenClipEmbedder\n"
        f"e = OpenClipEmbedder({tiny!r}, runtime='onnx', onnx_dir={str(exported)!r})\n"
        f"vectors = e.embed_texts({TEXTS!r})\n"
        "e.embed_prepared(np.zeros((1, 3, 32, 32), np.float32))\n"
        "assert 'torch' not in sys.modules and 'open_clip' not in sys.modules\n"
        "print(json.dumps(vectors.tolist()))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], check=True, timeout=60, capture_output=True, text=True
    )
    np.testing.assert_allclose(np.array(json.loads(done.stdout)), expected, atol=1e-6)


def test_cached_export_is_reused(
    tiny: str, exported: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("exported again")

    monkeypatch.setattr(export, "export", refuse)
    monkeypatch.setattr(export, "quantize", refuse)
    OpenClipEmbedder(tiny, runtime="onnx-int8", onnx_dir=exported).embed_texts(["cached"])


def test_stale_or_partial_exports_are_redone(tiny: str, tmp_path: Path) -> None:
    embedder = OpenClipEmbedder(tiny, runtime="onnx", onnx_dir=tmp_path)
    directory = onnx_runtime.export_dir(embedder.source_key, tmp_path)
    directory.mkdir(parents=True)
    (directory / "meta.json").write_text(json.dumps({"format": 1, "source": "other"}))
    vectors = embedder.embed_texts(TEXTS)
    assert onnx_runtime.read_meta(directory, embedder.source_key) is not None
    (directory / "image.onnx").unlink()
    assert onnx_runtime.read_meta(directory, embedder.source_key) is None
    again = OpenClipEmbedder(tiny, runtime="onnx", onnx_dir=tmp_path)
    np.testing.assert_allclose(again.embed_texts(TEXTS), vectors, atol=1e-6)


def test_failed_parity_is_a_model_error(
    tiny: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export, "PARITY_MIN", 1.5)
    with pytest.raises(ModelError, match="disagrees with torch"):
        OpenClipEmbedder(tiny, runtime="onnx", onnx_dir=tmp_path).embed_texts(["x"])
    assert list(tmp_path.iterdir()) == []


def test_attention_swap_is_undone(tiny: str) -> None:
    import torch

    embedder = OpenClipEmbedder(tiny)
    embedder.embed_texts(["load"])
    towers = embedder.towers
    with export.traceable_attention(towers.image_tower, towers.text_tower):
        swapped = embedder.embed_texts(TEXTS)
    kinds = {type(m.attn) for m in towers.text_tower.modules() if hasattr(m, "attn")}
    assert kinds == {torch.nn.MultiheadAttention}
    np.testing.assert_allclose(swapped, embedder.embed_texts(TEXTS), atol=1e-5)


def test_session_options_suit_small_machines() -> None:
    cores = onnx_runtime.physical_cores()
    assert cores >= 1
    options = onnx_runtime.session_options()
    assert options.intra_op_num_threads == cores and options.inter_op_num_threads == 1
    assert onnx_runtime.session_options(threads=1).intra_op_num_threads == 1


def test_loading_opens_the_tower_asked_for(
    tiny: str, exported: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`load("image")` opens the image session (an index run does it while images decode),
    and not the text one; embedding then opens nothing more."""
    opened: list[str] = []
    real = onnx_runtime.open_session

    def open_session(path: Path, threads: int | None = None) -> object:
        opened.append(path.name)
        return real(path, threads)

    monkeypatch.setattr(onnx_runtime, "open_session", open_session)
    embedder = OpenClipEmbedder(tiny, runtime="onnx", onnx_dir=exported)
    embedder.load("image")
    assert opened == ["image.onnx"]
    embedder.embed_images(pictures())
    assert opened == ["image.onnx"]
    PaddedEmbedder(OpenClipEmbedder(tiny, runtime="onnx", onnx_dir=exported)).load("text")
    assert opened == ["image.onnx", "text.onnx"]

"""ONNX pairs laid out like the immich project's exports run with no torch: an open_clip-style
text tower (input "text") and an M-CLIP one (input_ids + attention_mask), made here from tiny
torch modules, give the torch modules' own vectors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_image
from PIL import Image
from tiny_tokenizers import xlm_roberta_files

from imgfinder.embedders.families.immich import ImmichEmbedder
from imgfinder.embedders.preprocess import resize_center_crop_normalize
from imgfinder.embedders.registry import create_embedder
from imgfinder.search import SearchModel

torch = pytest.importorskip("torch")

SIZE, LENGTH, DIM = 32, 12, 16
MEAN, STD = (0.5, 0.45, 0.4), (0.25, 0.26, 0.27)


class Visual(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.patches = torch.nn.Conv2d(3, 8, kernel_size=8, stride=8)
        self.project = torch.nn.Linear(8, DIM)

    def forward(self, image):
        pooled = self.patches(image).mean(dim=(2, 3))
        return torch.nn.functional.normalize(self.project(pooled), dim=-1)


class Textual(torch.nn.Module):
    """open_clip-style: one int32 input named "text", padded to the context length."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, DIM)
        self.weights = torch.nn.Parameter(torch.linspace(1.0, 2.0, LENGTH)[:, None])

    def forward(self, text):
        vectors = (self.embed(text.long()) * self.weights).sum(dim=1)
        return torch.nn.functional.normalize(vectors, dim=-1)


class MClipTextual(torch.nn.Module):
    """M-CLIP-style: input_ids and attention_mask, mean pooled over the mask."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, DIM)
        self.project = torch.nn.Linear(DIM, DIM)

    def forward(self, input_ids, attention_mask):
        mask = attention_mask.float()[..., None]
        pooled = (self.embed(input_ids.long()) * mask).sum(1) / mask.sum(1)
        return torch.nn.functional.normalize(self.project(pooled), dim=-1)


def make_repo(folder: Path, mclip: bool) -> tuple[Path, torch.nn.Module, torch.nn.Module]:
    """An immich-style repository of tiny random towers (the layout of immich-app/*)."""
    torch.manual_seed(1)
    files = xlm_roberta_files()
    vocab = len(json.loads(files["tokenizer.json"])["model"]["vocab"])
    visual, textual = Visual().eval(), (MClipTextual(vocab) if mclip else Textual(vocab)).eval()
    (folder / "visual").mkdir(parents=True)
    (folder / "textual").mkdir()
    config = {"embed_dim": DIM, "vision_cfg": {"image_size": SIZE}}
    config["text_cfg"] = {"context_length": LENGTH}
    (folder / "config.json").write_text(json.dumps(config))
    preprocess = {"size": [SIZE, SIZE], "mean": MEAN, "std": STD, "interpolation": "bicubic"}
    (folder / "visual" / "preprocess_cfg.json").write_text(json.dumps(preprocess))
    for name, text in files.items():
        (folder / "textual" / name).write_text(text)
    image = torch.zeros(1, 3, SIZE, SIZE)
    torch.onnx.export(
        visual,
        (image,),
        folder / "visual" / "model.onnx",
        input_names=["image"],
        output_names=["embedding"],
        opset_version=17,
        dynamo=False,
    )
    ids = torch.ones(1, LENGTH, dtype=torch.int32)
    inputs = (ids, ids) if mclip else (ids,)
    names = ["input_ids", "attention_mask"] if mclip else ["text"]
    torch.onnx.export(
        textual,
        inputs,
        folder / "textual" / "model.onnx",
        input_names=names,
        output_names=["embedding"],
        opset_version=17,
        dynamo=False,
    )
    return folder, visual, textual


@pytest.mark.parametrize("mclip", [False, True], ids=["open_clip", "m-clip"])
def test_towers_give_the_torch_modules_vectors(tmp_path: Path, mclip: bool) -> None:
    folder, visual, textual = make_repo(tmp_path / "repo", mclip)
    embedder = ImmichEmbedder(folder)
    query = "собака"  # 8 tokens with the tiny tokenizer: room for padding
    encoding = embedder._tokenizer.encode(query)
    assert len(encoding.ids) == LENGTH and encoding.ids[-1] == 1  # padded with <pad> (id 1)
    long = embedder._tokenizer.encode("the quick brown fox jumps over the lazy dog " * 3)
    assert len(long.ids) == LENGTH  # and truncated to the context length
    ids = torch.tensor([encoding.ids], dtype=torch.int32)
    with torch.no_grad():
        if mclip:
            mask = torch.tensor([encoding.attention_mask], dtype=torch.int32)
            expected = textual(ids, mask).numpy()
        else:
            expected = textual(ids).numpy()
    got = embedder.embed_texts([query, "  a red   car at night "])
    assert got.shape == (2, DIM) and float(got[0] @ expected[0]) > 0.9999
    assert embedder.dim == DIM and embedder.image_size == SIZE

    pictures = [
        Image.open(make_image(tmp_path / f"{c}.png", c, size=(60, 40))) for c in ("red", "blue")
    ]
    prepared = np.stack([resize_center_crop_normalize(p, SIZE, MEAN, STD) for p in pictures])
    with torch.no_grad():
        reference = visual(torch.from_numpy(prepared)).numpy()
    images = embedder.embed_images(pictures)
    assert all(float(a @ b) > 0.9999 for a, b in zip(images, reference, strict=True))


def test_from_the_registry_with_no_torch_in_the_process(tmp_path: Path) -> None:
    models, key = tmp_path / "models", "immich-xlm-roberta-large-vit-b-16plus"
    make_repo(models / "immich-app--XLM-Roberta-Large-Vit-B-16Plus", mclip=True)
    embedder = create_embedder(key, model_dir=models)
    assert embedder.key.startswith("immich:immich-app--XLM-Roberta-Large-Vit-B-16Plus:")
    album = tmp_path / "album"
    for color in ("red", "green", "blue"):
        make_image(album / f"{color}.png", color)
    model = SearchModel(tmp_path / "c", embedder, model_name=key)
    assert model.index([album]).indexed == 3
    assert len(model.search_text("синяя звезда", k=3, threshold=-1)) == 3
    script = (
        "import sys; from pathlib import Path; from PIL import Image;"
        "from imgfinder.embedders.registry import create_embedder;"
        f"e = create_embedder({key!r}, model_dir=Path({str(models)!r}));"
        "e.embed_texts(['собака на пляже']); e.embed_images([Image.new('RGB', (50, 40))]);"
        "print(sorted(m for m in ('torch', 'open_clip', 'transformers') if m in sys.modules))"
    )
    ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert ran.stdout.strip() == "[]", ran.stdout + ran.stderr


def test_a_broken_repo_is_one_sentence(tmp_path: Path) -> None:
    from imgfinder.errors import ModelError

    folder, _, _ = make_repo(tmp_path / "repo", mclip=False)
    (folder / "textual" / "tokenizer_config.json").write_text('{"pad_token": "<nope>"}')
    with pytest.raises(ModelError, match="names no known pad token"):
        ImmichEmbedder(folder)
    (folder / "visual" / "model.onnx").unlink()
    with pytest.raises(ModelError, match=r"lacks visual/model\.onnx"):
        ImmichEmbedder(folder)
    with pytest.raises(ModelError, match="ONNX Runtime fp32 only"):
        ImmichEmbedder(folder, runtime="torch")

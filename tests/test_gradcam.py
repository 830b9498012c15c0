"""Grad-CAM maps: they find the queried object on the demo world's composites, and on tiny
random open_clip towers they equal a hook-free re-computation whatever the token layout."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

import numpy as np
import pytest

from imgfinder.demo.world import render_composite, sample_composite
from imgfinder.embedders.families.demo import DemoEmbedder
from imgfinder.errors import MissingExtraError, ModelError
from imgfinder.gradcam import gradcam_heat

TEXT_CFG = {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1}
CONFIGS = {
    "imgfinder-gradcam-vit": {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
        "text_cfg": TEXT_CFG,
    },
    "imgfinder-gradcam-resnet": {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8, "head_width": 32},
        "text_cfg": TEXT_CFG,
    },
}
VIT, RESNET = CONFIGS
#: measured 0.92 on these 100 composites (0.92-0.965 on other seeds); the masks method: 0.985
DEMO_FLOOR = 0.88


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread: on a shared two-core machine a second one waits on the busy core,
    and these small convolutions take a hundred times longer."""
    try:
        import torch
    except ImportError:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def demo_torch() -> DemoEmbedder:
    pytest.importorskip("torch")
    return DemoEmbedder(runtime="torch")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Registers the tiny ViT and ModifiedResNet architectures with open_clip."""
    open_clip = pytest.importorskip("open_clip")
    folder = tmp_path_factory.mktemp("configs")
    for name, config in CONFIGS.items():
        (folder / f"{name}.json").write_text(json.dumps(config))
        open_clip.add_model_config(folder / f"{name}.json")


def open_clip_embedder(name: str):
    from imgfinder.embedders.families.openclip import OpenClipEmbedder

    return OpenClipEmbedder(name)


def unit(vector: np.ndarray) -> np.ndarray:
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def random_input(embedder, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(pixels, unit target) for a random-weight model, where no query means anything."""
    rng = np.random.default_rng(seed)
    size = embedder.image_size
    pixels = rng.standard_normal((3, size, size)).astype(np.float32)
    return pixels, unit(rng.standard_normal(embedder.dim))


def reference_heat(visual, pixels: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Grad-CAM written out with no hooks: the model's forward split by hand at the layer."""
    import torch
    from open_clip.modified_resnet import ModifiedResNet

    image = torch.from_numpy(pixels[None])
    with torch.enable_grad():
        if isinstance(visual, ModifiedResNet):
            x = visual.layer4(visual.layer3(visual.layer2(visual.layer1(visual.stem(image)))))
            leaf = x.detach().requires_grad_()
            embedding = visual.attnpool(leaf)
        else:
            x = visual._embeds(image)
            for block in visual.transformer.resblocks[:-1]:
                x = block(x)
            leaf = x.detach().requires_grad_()
            pooled, _ = visual._pool(visual.transformer.resblocks[-1](leaf))
            embedding = pooled @ visual.proj
        cosine = torch.nn.functional.cosine_similarity(embedding, torch.from_numpy(target)[None])
        (gradient,) = torch.autograd.grad(cosine.sum(), leaf)

    def grid(tensor):
        if isinstance(visual, ModifiedResNet):
            return tensor[0]
        rows, columns = visual.grid_size
        return tensor[0, 1:].reshape(rows, columns, -1).permute(2, 0, 1)  # token 0 is CLS

    weights = grid(gradient).mean(dim=(1, 2))
    cam = (weights[:, None, None] * grid(leaf)).sum(0).relu().detach()
    upsampled = torch.nn.functional.interpolate(
        cam[None, None], size=pixels.shape[-2:], mode="bilinear", align_corners=False
    )
    return upsampled[0, 0].numpy()


def test_peak_lands_on_the_queried_object(demo_torch: DemoEmbedder) -> None:
    rng = np.random.default_rng(0)
    hits, total = 0, 100
    for index in range(total):
        composite = sample_composite(rng)
        part = composite.parts[index % len(composite.parts)]
        target = demo_torch.embed_texts([f"a {part.colour} {part.shape}"])[0]
        pixels = demo_torch.prepare_image(render_composite(composite, demo_torch.image_size))
        heat = gradcam_heat(demo_torch, pixels, target)
        assert heat.shape == pixels.shape[1:] and heat.dtype == np.float32
        assert np.isfinite(heat).all() and heat.min() >= 0.0
        row, column = np.unravel_index(int(np.argmax(heat)), heat.shape)
        x, y = (column + 0.5) / heat.shape[1], (row + 0.5) / heat.shape[0]
        left, top, right, bottom = part.box
        hits += left <= x <= right and top <= y <= bottom
    assert hits / total >= DEMO_FLOOR, f"peak inside the object in {hits} of {total}"


def test_leaves_the_model_as_it_was_and_works_inside_inference_mode(
    demo_torch: DemoEmbedder,
) -> None:
    import torch

    model = demo_torch._model
    pixels, target = random_input(demo_torch)
    before = demo_torch.embed_prepared(pixels[None])
    with torch.inference_mode():
        heat = gradcam_heat(demo_torch, pixels, target)
    assert heat.max() > 0.0
    assert all(param.grad is None and param.requires_grad for param in model.parameters())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    np.testing.assert_array_equal(demo_torch.embed_prepared(pixels[None]), before)


@pytest.mark.parametrize("name", [VIT, RESNET])
def test_open_clip_maps_equal_a_hook_free_computation(tiny: None, name: str) -> None:
    embedder = open_clip_embedder(name)
    visual = embedder.towers.image_tower.clip.visual
    pixels, target = random_input(embedder)
    heat = gradcam_heat(embedder, pixels, target)
    opposite = gradcam_heat(embedder, pixels, -target)
    for map_ in (heat, opposite):
        assert map_.shape == pixels.shape[1:] and map_.dtype == np.float32
        assert np.isfinite(map_).all() and map_.min() >= 0.0
    # the opposite query flips the gradient's sign: together they cover every coarse cell
    assert (heat + opposite).min() > 0.0
    np.testing.assert_allclose(heat, reference_heat(visual, pixels, target), atol=1e-6, rtol=1e-4)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in visual.modules())


def test_vit_map_follows_the_target(tiny: None) -> None:
    embedder = open_clip_embedder(VIT)
    pixels, first = random_input(embedder, seed=1)
    _, second = random_input(embedder, seed=2)
    one, other = gradcam_heat(embedder, pixels, first), gradcam_heat(embedder, pixels, second)
    assert one.max() > 0.0 and other.max() > 0.0
    assert np.abs(one / one.max() - other / other.max()).max() > 0.1


def test_vit_map_is_the_same_in_sequence_first_layout(tiny: None) -> None:
    """open_clip can run its transformer LND (sequence first): the same weights must give
    the same map, so the patch tokens are found in either layout."""
    from open_clip.transformer import Transformer

    batch_first, sequence_first = open_clip_embedder(VIT), open_clip_embedder(VIT)
    visual = sequence_first.towers.image_tower.clip.visual
    old = visual.transformer
    heads = old.resblocks[0].attn.num_heads
    lnd = Transformer(old.width, old.layers, heads, batch_first=False)
    lnd.load_state_dict(old.state_dict())
    visual.transformer = lnd.eval()
    pixels, target = random_input(batch_first, seed=3)
    np.testing.assert_allclose(
        sequence_first.embed_prepared(pixels[None]),
        batch_first.embed_prepared(pixels[None]),
        atol=1e-5,
    )
    np.testing.assert_allclose(
        gradcam_heat(sequence_first, pixels, target),
        gradcam_heat(batch_first, pixels, target),
        atol=1e-6,
        rtol=1e-4,
    )


def test_onnx_and_other_embedders_raise_model_error(embedder) -> None:
    onnx = DemoEmbedder()
    pixels = np.zeros((3, onnx.image_size, onnx.image_size), np.float32)
    target = unit(np.ones(onnx.dim))
    with pytest.raises(ModelError, match="needs the PyTorch runtime"):
        gradcam_heat(onnx, pixels, target)
    with pytest.raises(ModelError, match="needs the PyTorch runtime"):
        gradcam_heat(embedder, pixels, unit(np.ones(embedder.dim)))


def test_wrong_shapes_raise_model_error(demo_torch: DemoEmbedder) -> None:
    pixels, target = random_input(demo_torch)
    with pytest.raises(ModelError, match="query vector has 7 numbers"):
        gradcam_heat(demo_torch, pixels, unit(np.ones(7)))
    with pytest.raises(ModelError, match=r"pixels are \[3, 64, 64\]"):
        gradcam_heat(demo_torch, pixels[:, :32, :32], target)


def test_missing_torch_names_the_extra(tiny: None, monkeypatch: pytest.MonkeyPatch) -> None:
    embedder = open_clip_embedder(VIT)  # not loaded yet: torch is first needed here
    monkeypatch.setitem(sys.modules, "torch", None)
    pixels = np.zeros((3, 32, 32), np.float32)
    with pytest.raises(MissingExtraError, match=r"imgfinder\[torch\]"):
        gradcam_heat(embedder, pixels, unit(np.ones(32)))


@pytest.mark.parametrize("method", ["masks", "gradcam"])
def test_both_methods_map_an_open_clip_photo(tiny: None, method: str) -> None:
    """The whole path for a CLIP-family model: a wide photo in, a map over it out, zero where
    the model's centre crop never looked."""
    from PIL import Image

    from imgfinder.explain import relevance_map

    embedder = open_clip_embedder(VIT)
    photo = Image.fromarray(np.random.default_rng(3).integers(0, 255, (60, 120, 3), np.uint8))
    found = relevance_map(embedder, photo, unit(np.ones(embedder.dim)), method=method, masks=100)
    assert found.heat.shape == (60, 120) and found.method == method
    assert found.heat.max() == pytest.approx(1.0, abs=0.05)
    assert found.heat[:, :29].max() == 0 and found.heat[:, 91:].max() == 0
    assert found.views == (100 if method == "masks" else 0)

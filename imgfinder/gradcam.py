"""Grad-CAM relevance maps: the gradient of the query cosine at a convolutional or token layer.

One backward pass instead of the masking method's thousand forwards, but it needs the
embedder's PyTorch runtime: ONNX Runtime gives no gradients. The layer is a trade-off between
resolution and meaning; the choices below were measured on the demo world's composites
(peak inside the queried object's box): the demo CNN's last 8x8 block scores 0.93, its 16x16
blocks 0.79, its last 4x4 block (where max pooling makes the gradient spiky) 0.52.

The activation is swapped for a detached copy that requires grad, so the parameters' own
`requires_grad` and `.grad` are never touched, and the hook acts only in the calling thread:
a search running the same model in another thread is unaffected while a map is computed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from imgfinder.embedders.base import Embedder
from imgfinder.embedders.export import TorchTowers, import_torch
from imgfinder.embedders.families.demo import DemoEmbedder
from imgfinder.embedders.towers import TowerEmbedder
from imgfinder.errors import ModelError

NEEDS_TORCH = "the gradient map needs the PyTorch runtime; choose runtime torch or the masks method"


@dataclass(frozen=True)
class _Site:
    """Where to read the activation: `tower` maps pixels to embeddings; the activation is
    `layer`'s input (`before`) or output, and `as_grid` turns it into [n, channels, h, w]."""

    tower: Any
    layer: Any
    before: bool
    as_grid: Callable[[Any], Any]


def gradcam_heat(embedder: Embedder, pixels: np.ndarray, target: np.ndarray) -> np.ndarray:
    """float32[S, S] (non-negative, any scale) over the model's prepared input `pixels`
    (float32[3, S, S], what `embedder.prepare_image(image)` returns) showing which regions
    raise cosine(image embedding, target); target is a unit float32[dim] query vector."""
    if not isinstance(embedder, (DemoEmbedder, TowerEmbedder)) or embedder.runtime != "torch":
        raise ModelError(NEEDS_TORCH)
    torch = import_torch()
    site = _demo_site(embedder) if isinstance(embedder, DemoEmbedder) else _tower_site(embedder)
    pixels = np.asarray(pixels, dtype=np.float32)
    size = embedder.image_size
    if pixels.shape != (3, size, size):
        raise ModelError(
            f"this model's prepared pixels are [3, {size}, {size}], not {pixels.shape}"
        )
    parameter = next(site.tower.parameters())
    owner = threading.get_ident()
    captured: list[Any] = []

    def swap(tensor: Any) -> Any:
        leaf = tensor.detach().requires_grad_()
        captured.append(leaf)
        return leaf

    def before_hook(module: Any, args: tuple) -> tuple | None:
        return (swap(args[0]), *args[1:]) if threading.get_ident() == owner else None

    def after_hook(module: Any, args: tuple, output: Any) -> Any:
        return swap(output) if threading.get_ident() == owner else None

    if site.before:
        handle = site.layer.register_forward_pre_hook(before_hook)
    else:
        handle = site.layer.register_forward_hook(after_hook)
    try:
        with torch.inference_mode(False), torch.enable_grad():
            image = torch.from_numpy(pixels[None]).to(parameter.device, parameter.dtype)
            embedding = site.tower(image)[0].float()
            query = torch.from_numpy(np.asarray(target, dtype=np.float32).reshape(-1))
            if query.numel() != embedding.numel():
                raise ModelError(
                    f"the query vector has {query.numel()} numbers but this model's "
                    f"embeddings have {embedding.numel()}"
                )
            cosine = embedding @ query.to(embedding.device) / embedding.norm().clamp_min(1e-12)
            (gradient,) = torch.autograd.grad(cosine, captured[0])
    finally:
        handle.remove()
    with torch.no_grad():
        activation = site.as_grid(captured[0]).float()
        weights = site.as_grid(gradient).float().mean(dim=(2, 3), keepdim=True)
        cam = (weights * activation).sum(dim=1, keepdim=True).relu()
        side = pixels.shape[-2:]
        heat = torch.nn.functional.interpolate(cam, size=side, mode="bilinear", align_corners=False)
    return heat[0, 0].cpu().numpy()


def _demo_site(embedder: DemoEmbedder) -> _Site:
    """The demo CNN's next-to-last stage (8x8 at 64 px): fine enough to tell two objects apart,
    deep enough to know colour and shape; its last stage is 4x4 and max-pooled."""
    tower = embedder._model.image
    return _Site(tower, tower.features[-3], before=False, as_grid=lambda x: x)


def _tower_site(embedder: TowerEmbedder) -> _Site:
    """open_clip's ViT: patch tokens entering the last residual block (its output's patch
    tokens get no gradient when the class token is pooled); ModifiedResNet: `layer4`."""
    from open_clip.modified_resnet import ModifiedResNet
    from open_clip.transformer import VisionTransformer

    towers = embedder.towers
    if not isinstance(towers, TorchTowers):
        raise ModelError(NEEDS_TORCH)
    visual = towers.image_tower.clip.visual
    if isinstance(visual, ModifiedResNet):
        return _Site(towers.image_tower, visual.layer4, before=False, as_grid=lambda x: x)
    if isinstance(visual, VisionTransformer):
        rows, columns = visual.grid_size
        batch_first = visual.transformer.batch_first

        def patch_grid(tokens: Any) -> Any:
            """[n, prefix + rows * columns, width] (or LND) to [n, width, rows, columns]."""
            tokens = tokens if batch_first else tokens.transpose(0, 1)
            patches = tokens[:, -rows * columns :]
            return patches.transpose(1, 2).reshape(len(patches), -1, rows, columns)

        return _Site(towers.image_tower, visual.transformer.resblocks[-1], True, patch_grid)
    raise ModelError(
        f"the gradient map supports open_clip ViT and ModifiedResNet image towers, not "
        f"{type(visual).__name__}; choose the masks method"
    )

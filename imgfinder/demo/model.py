"""The demo model's two towers in torch (training and export only; search runs on ONNX).

Image tower: a small CNN that downsamples in its first layer (CPU time goes where pixels
are), then strided 3x3 blocks, average + max pooling, a linear projection. Text tower: the
tokenizer's per-word feature ids are embedded and averaged into word vectors, which a
two-layer pre-norm transformer contextualises (word order matters: "a red circle on a blue
background" is not "a blue circle on a red background"), then masked mean pooling and a
projection. Both outputs are L2-normalised; the temperature is learned.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn


@dataclass
class DemoConfig:
    """Everything needed to rebuild the towers and preprocess their inputs."""

    num_ids: int
    max_words: int = 16
    max_features: int = 12
    image_size: int = 64
    embed_dim: int = 128
    widths: tuple[int, ...] = (16, 32, 64, 128)
    text_dim: int = 128
    text_layers: int = 2
    text_heads: int = 4
    text_ff: int = 256
    mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DemoConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for name in ("widths", "mean", "std"):
            if name in known:
                known[name] = tuple(known[name])
        return cls(**known)


def _conv(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class ImageTower(nn.Module):
    """float32[n, 3, S, S] normalised pixels → float32[n, embed_dim] unit rows."""

    def __init__(self, config: DemoConfig) -> None:
        super().__init__()
        w = config.widths
        layers = [_conv(3, w[0], 2)]
        for cin, cout in itertools.pairwise(w):
            layers += [_conv(cin, cout, 2), _conv(cout, cout, 1)]
        self.features = nn.Sequential(*layers)
        self.proj = nn.Linear(2 * w[-1], config.embed_dim)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.features(pixels)
        pooled = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)
        return _unit(self.proj(pooled))


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, ff: int) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads  # a Python int, so export sees a constant
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, ff), nn.GELU(), nn.Linear(ff, dim))

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        n, length, dim = x.shape
        head_dim = self.head_dim
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        q, k, v = (t.reshape(n, length, self.heads, head_dim).transpose(1, 2) for t in (q, k, v))
        scores = q @ k.transpose(-1, -2) / math.sqrt(head_dim) + bias
        mixed = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(n, length, dim)
        x = x + self.out(mixed)
        return x + self.ff(self.norm2(x))


class TextTower(nn.Module):
    """int64[n, words, features] tokenizer ids → float32[n, embed_dim] unit rows."""

    def __init__(self, config: DemoConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(config.num_ids, config.text_dim, padding_idx=0)
        self.position = nn.Parameter(torch.zeros(config.max_words, config.text_dim))
        self.blocks = nn.ModuleList(
            _Block(config.text_dim, config.text_heads, config.text_ff)
            for _ in range(config.text_layers)
        )
        self.norm = nn.LayerNorm(config.text_dim)
        self.proj = nn.Linear(config.text_dim, config.embed_dim)
        nn.init.normal_(self.embed.weight, std=0.1)
        nn.init.normal_(self.position, std=0.02)
        with torch.no_grad():
            self.embed.weight[0].zero_()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.contextualise(self.word_vectors(ids), (ids[:, :, 0] > 0).to(torch.float32))

    def word_vectors(self, rows: torch.Tensor) -> torch.Tensor:
        """int64[..., features] → float32[..., text_dim]: the mean of the feature embeddings."""
        counts = (rows > 0).to(torch.float32).sum(dim=-1, keepdim=True).clamp(min=1.0)
        return self.embed(rows).sum(dim=-2) / counts  # padding ids embed to zero

    def contextualise(self, words: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Word vectors [n, words, dim] and presence mask [n, words] → unit text embeddings.

        Split from `forward` so training can embed each distinct word of a batch once.
        """
        x = words + self.position[: words.shape[1]]
        bias = ((mask - 1.0) * 1e4)[:, None, None, :]
        for block in self.blocks:
            x = block(x, bias)
        weights = mask[:, :, None]
        pooled = (self.norm(x) * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        return _unit(self.proj(pooled))


class DemoCLIP(nn.Module):
    """Both towers plus the learned temperature used by the contrastive loss."""

    def __init__(self, config: DemoConfig) -> None:
        super().__init__()
        self.config = config
        self.image = ImageTower(config)
        self.text = TextTower(config)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def scale(self) -> torch.Tensor:
        """Contrastive logit scale, capped at 100 as in CLIP so training stays stable."""
        return self.logit_scale.clamp(max=math.log(100.0)).exp()


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp(min=1e-12)


def count_parameters(module: nn.Module) -> int:
    """Trainable size, for the ≤ 2 M parameter budget."""
    return sum(p.numel() for p in module.parameters())


def load_model(config: DemoConfig, state: dict[str, torch.Tensor]) -> DemoCLIP:
    """A model in eval mode with `state` loaded strictly."""
    model = DemoCLIP(config)
    model.load_state_dict(state, strict=True)
    return model.eval()


__all__ = ["DemoCLIP", "DemoConfig", "ImageTower", "TextTower", "count_parameters", "load_model"]

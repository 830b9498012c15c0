"""Train the bundled demo model from a seed and a fixed step count, export it, evaluate it.

    python -m imgfinder.demo.train --steps 1200 --seed 0 --threads 1 --out imgfinder/demo/bundled

Writes model.safetensors, config.json, tokenizer.json, image.onnx, text.onnx, metrics.json
and the model card README.md into --out. The same seed and step count give the same weights
on the same thread count: data come from seeded generators, the loop is single-process.
One thread is the better choice on a busy machine (two OpenMP threads that wait for each other
while other jobs hold the cores cost several times more CPU); two on an idle one.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from imgfinder.atomic import atomic_write_file, atomic_write_text
from imgfinder.demo import acceptance, world
from imgfinder.demo.model import DemoCLIP, DemoConfig, count_parameters
from imgfinder.demo.tokenizer import UNK_ID, Tokenizer
from imgfinder.embedders.families import demo as demo_embedder
from imgfinder.embedders.preprocess import resize_center_crop_normalize

log = logging.getLogger(__name__)

#: the issue's speed targets are for 2 cores, whatever thread count training used
SPEED_THREADS = 2
_LATIN = "abcdefghijklmnopqrstuvwxyz"
_CYRILLIC = "абвгдежзийклмнопрстуфхцчшщыьэюя"


# --------------------------------------------------------------------------- data


def _scene_arrays(scenes: Sequence[world.Scene]) -> dict[str, np.ndarray]:
    return {
        "colour": np.array([world.COLOUR_NAMES.index(s.colour) for s in scenes]),
        "shape": np.array([world.SHAPE_NAMES.index(s.shape) for s in scenes]),
        "size": np.array([world.SIZES.index(s.size) for s in scenes]),
        "count": np.array([s.count for s in scenes]),
        "background": np.array([world.BACKGROUND_NAMES.index(s.background) for s in scenes]),
    }


def _spec_arrays(specs: Sequence[world.Spec]) -> dict[str, np.ndarray]:
    def index(names: Sequence[str], value: str | None) -> int:
        return -1 if value is None else names.index(value)

    return {
        "colour": np.array([index(world.COLOUR_NAMES, s.colour) for s in specs]),
        "shape": np.array([index(world.SHAPE_NAMES, s.shape) for s in specs]),
        "size": np.array([index(world.SIZES, s.size) for s in specs]),
        "count": np.array([s.count or 0 for s in specs]),
        "plural": np.array([s.plural for s in specs]),
        "background": np.array([index(world.BACKGROUND_NAMES, s.background) for s in specs]),
    }


def match_matrix(specs: dict[str, np.ndarray], scenes: dict[str, np.ndarray]) -> np.ndarray:
    """bool[n_specs, n_scenes]: which scenes each spec describes truly (vectorised Spec.matches)."""
    ok = np.ones((len(specs["colour"]), len(scenes["colour"])), dtype=bool)
    for name in ("colour", "shape", "size", "background"):
        wanted = specs[name][:, None]
        ok &= (wanted < 0) | (wanted == scenes[name][None, :])
    count = specs["count"][:, None]
    ok &= (count == 0) | (count == scenes["count"][None, :])
    ok &= ~specs["plural"][:, None] | (scenes["count"][None, :] >= 2)
    return ok


def _pseudo_word(rng: np.random.Generator, alphabet: str) -> str:
    return "".join(alphabet[int(i)] for i in rng.integers(len(alphabet), size=rng.integers(3, 9)))


def _with_noise_word(text: str, lang: str, rng: np.random.Generator) -> str:
    """Insert a random made-up word, so unknown words learn to carry no meaning."""
    words = text.split(" ")
    word = _pseudo_word(rng, _LATIN if lang == "en" else _CYRILLIC)
    words.insert(int(rng.integers(len(words) + 1)), word)
    return " ".join(words)


def build_tokenizer(seed: int, n_captions: int) -> Tokenizer:
    """Vocabulary of the training captions only: held-out phrasings' words stay unknown."""
    rng = np.random.default_rng(seed)
    scenes = [world.sample_scene(rng) for _ in range(max(1, n_captions // 8))]
    texts = [
        world.phrase(world.describe(s, rng, p_partial=0.2), lang, rng)
        for s in scenes
        for lang in world.LANGUAGES
        for _ in range(4)
    ]
    return Tokenizer.build(texts, min_count=2)


def render_pool(n: int, seed: int, image_size: int) -> tuple[np.ndarray, list[world.Scene]]:
    """Training images as uint8[n, S, S, 3], of training kinds only.

    Half are drawn at the model's size; half larger and then reduced with the same bicubic
    resize the embedder uses, so training sees both kinds of edges.
    """
    rng = np.random.default_rng(seed)
    scenes = [world.sample_scene(rng) for _ in range(n)]
    pixels = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
    for i, scene in enumerate(scenes):
        if i % 2:
            big = world.render(scene, image_size * 3 // 2, supersample=2)
            image = big.resize((image_size, image_size), Image.Resampling.BICUBIC, reducing_gap=3.0)
        else:
            image = world.render(scene, image_size, supersample=3)
        pixels[i] = np.asarray(image)
    return pixels, scenes


class Batches:
    """Seeded stream of (pixels, text ids, image-text positives, en-ru positives)."""

    def __init__(
        self,
        pixels: np.ndarray,
        scenes: Sequence[world.Scene],
        tokenizer: Tokenizer,
        config: DemoConfig,
        batch: int,
        seed: int,
        p_noise_word: float = 0.15,
        p_unk: float = 0.1,
    ) -> None:
        self.pixels = pixels
        self.scenes = list(scenes)
        self.attrs = _scene_arrays(scenes)
        self.tokenizer = tokenizer
        self.batch = batch
        self.rng = np.random.default_rng(seed)
        self.mean = torch.tensor(config.mean).view(1, 3, 1, 1)
        self.std = torch.tensor(config.std).view(1, 3, 1, 1)
        self.p_noise_word = p_noise_word
        self.p_unk = p_unk

    def next(self) -> dict[str, torch.Tensor]:
        """Images, texts as distinct word rows + index + mask, positives and targets."""
        rng = self.rng
        idx = rng.integers(len(self.scenes), size=self.batch)
        specs = [world.describe(self.scenes[i], rng, p_partial=0.12) for i in idx]
        texts = []
        for lang in world.LANGUAGES:
            for spec in specs:
                text = world.phrase(spec, lang, rng)
                if rng.random() < self.p_noise_word:
                    text = _with_noise_word(text, lang, rng)
                texts.append(text)
        ids = self.tokenizer.encode(texts)
        unk = (rng.random(ids.shape[:2]) < self.p_unk) & (ids[:, :, 0] > UNK_ID)
        ids[:, :, 0][unk] = UNK_ID
        length = max(1, int((ids[:, :, 0] > 0).sum(axis=1).max()))
        rows, index = np.unique(
            ids[:, :length].reshape(-1, ids.shape[2]), axis=0, return_inverse=True
        )
        index = index.reshape(len(ids), length)
        mask = (ids[:, :length, 0] > 0).astype(np.float32)
        scene_attrs = {k: v[idx] for k, v in self.attrs.items()}
        spec_attrs = _spec_arrays(specs + specs)
        positives = match_matrix(spec_attrs, scene_attrs)
        codes: dict[world.Spec, int] = {}
        keys = np.array([codes.setdefault(s, len(codes)) for s in specs])
        same = keys[:, None] == keys[None, :]

        x = torch.from_numpy(self.pixels[idx]).permute(0, 3, 1, 2).float().div_(255.0)
        flip = torch.from_numpy(rng.random(self.batch) < 0.5)
        x[flip] = x[flip].flip(3)
        gain = torch.from_numpy(rng.uniform(0.93, 1.07, (self.batch, 1, 1, 1))).float()
        noise = torch.from_numpy(rng.standard_normal(x.shape, dtype=np.float32) * 0.015)
        x = ((x * gain + noise).clamp_(0, 1) - self.mean) / self.std
        x = x.contiguous(memory_format=torch.channels_last)
        out = {
            "pixels": x,
            "rows": torch.from_numpy(rows),
            "index": torch.from_numpy(index),
            "mask": torch.from_numpy(mask),
            "positives": torch.from_numpy(positives),
            "same": torch.from_numpy(same),
        }
        for name in ATTRIBUTES:
            out[f"image_{name}"] = torch.from_numpy(scene_attrs[name] - (name == "count"))
            target = spec_attrs[name].copy()
            if name == "count":  # 0 unsaid, 1-3, 4 = plural without a number
                target[spec_attrs["plural"]] = 4
            else:
                target[target < 0] = len(_CHOICES[name])  # the last class is "unsaid"
            out[f"text_{name}"] = torch.from_numpy(target)
        return out


ATTRIBUTES = ("colour", "shape", "size", "count", "background")
_CHOICES = {
    "colour": world.COLOUR_NAMES,
    "shape": world.SHAPE_NAMES,
    "size": world.SIZES,
    "count": (1, 2, 3),
    "background": world.BACKGROUND_NAMES,
}


class AttributeHeads(nn.Module):
    """Training-only linear probes reading scene attributes off both towers' embeddings.

    They give every step dense supervision (what colour, which shape, how many...), which
    speeds up the small CPU budget a lot; the contrastive loss still does the aligning.
    Texts have one more class per attribute: "not mentioned" (and "plural" for count).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.image = nn.ModuleDict({a: nn.Linear(dim, len(c)) for a, c in _CHOICES.items()})
        self.text = nn.ModuleDict(
            {a: nn.Linear(dim, len(c) + (2 if a == "count" else 1)) for a, c in _CHOICES.items()}
        )

    def loss(self, image: torch.Tensor, text: torch.Tensor, batch: dict) -> torch.Tensor:
        total = image.new_zeros(())
        for name in ATTRIBUTES:
            total = total + F.cross_entropy(self.image[name](image), batch[f"image_{name}"])
            total = total + F.cross_entropy(self.text[name](text), batch[f"text_{name}"])
        return total / len(ATTRIBUTES)


def soft_cross_entropy(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against a uniform target over each row's positives (multi-positive)."""
    target = positives.float()
    target = target / target.sum(dim=1, keepdim=True).clamp(min=1.0)
    return -(F.log_softmax(logits, dim=1) * target).sum(dim=1).mean()


def same_kind_loss(image: torch.Tensor, scale: torch.Tensor, batch: dict) -> torch.Tensor:
    """Image↔image contrastive term: other images of the same colour and shape are positives.

    Text supervision alone spreads images of one kind by count, size and background about as
    far as by colour or shape; this keeps "more like this" about the object first.
    """
    kind = batch["image_colour"] * len(world.SHAPE_NAMES) + batch["image_shape"]
    eye = torch.eye(len(kind), dtype=torch.bool)
    positives = (kind[:, None] == kind[None, :]) & ~eye
    anchors = positives.any(dim=1)
    if not bool(anchors.any()):
        return image.new_zeros(())
    logits = (scale * image @ image.T).masked_fill(eye, -1e4)
    return soft_cross_entropy(logits[anchors], positives[anchors])


# --------------------------------------------------------------------------- export


def export_onnx(model: DemoCLIP, out: Path) -> None:
    """Both towers to ONNX (opset 17, TorchScript exporter, dynamic batch)."""
    config = model.config
    model.eval()
    pixels = torch.zeros(2, 3, config.image_size, config.image_size)
    ids = torch.ones(2, config.max_words, config.max_features, dtype=torch.int64)
    for tower, example, name, path in (
        (model.image, pixels, "pixels", out / demo_embedder.IMAGE_ONNX),
        (model.text, ids, "ids", out / demo_embedder.TEXT_ONNX),
    ):

        def make(tmp: str, tower=tower, example=example, name=name) -> None:
            torch.onnx.export(
                tower,
                (example,),
                tmp,
                input_names=[name],
                output_names=["embedding"],
                dynamic_axes={name: {0: "batch"}, "embedding": {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )

        atomic_write_file(path, make)
    model.eval()


def save_model(model: DemoCLIP, tokenizer: Tokenizer, out: Path, info: dict) -> None:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    atomic_write_file(out / demo_embedder.WEIGHTS_FILE, lambda tmp: save_file(state, tmp))
    config = model.config.to_dict()
    config["extra"] = info
    atomic_write_text(out / demo_embedder.CONFIG_FILE, json.dumps(config, indent=2) + "\n")
    tokenizer.save(out / demo_embedder.TOKENIZER_FILE)


# --------------------------------------------------------------------------- training


def quick_eval(model: DemoCLIP, tokenizer: Tokenizer, scenes, pixels: torch.Tensor) -> str:
    """Template mAP in each language on a small validation world (progress only)."""
    from imgfinder import evaluation as ev

    model.eval()
    with torch.inference_mode():
        images = model.image(pixels).numpy()
        parts = []
        for lang in world.LANGUAGES:
            queries = world.make_queries(scenes, lang, 100, 3, world.TRAIN_KINDS)
            texts = model.text(torch.from_numpy(tokenizer.encode(queries.texts))).numpy()
            rankings = ev.rank_by_similarity(texts, images)
            parts.append(f"{lang} mAP {ev.mean_average_precision(rankings, queries.relevant):.3f}")
    model.train()
    return ", ".join(parts)


def train(args: argparse.Namespace) -> dict:
    """Run the training loop; returns the model (in eval mode), tokenizer and timings."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        return _train(args)
    finally:
        torch.use_deterministic_algorithms(deterministic)


def _train(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    started = time.perf_counter()
    cpu_started = time.process_time()

    tokenizer = build_tokenizer(args.seed, args.corpus)
    config = DemoConfig(
        num_ids=tokenizer.num_ids,
        max_words=tokenizer.max_words,
        max_features=tokenizer.max_features,
        image_size=args.image_size,
        embed_dim=args.embed_dim,
        widths=tuple(args.widths),
    )
    model = DemoCLIP(config)
    model.image.to(memory_format=torch.channels_last)
    print(f"vocab {len(tokenizer.vocab)} words, {count_parameters(model):,} parameters")

    pixels, scenes = render_pool(args.pool, args.seed + 1, config.image_size)
    print(f"rendered {len(scenes)} training images in {time.perf_counter() - started:.0f}s")
    batches = Batches(pixels, scenes, tokenizer, config, args.batch, args.seed + 2)
    val_scenes = world.make_dataset(min(400, args.pool), args.seed + 3)
    val_pixels = torch.from_numpy(
        np.stack(
            [
                resize_center_crop_normalize(
                    world.render(s, acceptance.RENDER_SIZE, supersample=2),
                    config.image_size,
                    config.mean,
                    config.std,
                )
                for s in val_scenes
            ]
        )
    )

    heads = AttributeHeads(config.embed_dim)
    params = [*model.named_parameters(), *heads.named_parameters()]
    decay = [p for n, p in params if p.ndim >= 2 and "embed" not in n]
    rest = [p for n, p in params if not (p.ndim >= 2 and "embed" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": rest, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.98),
    )
    warmup = max(1, args.steps // 20)

    def lr_at(step: int) -> float:
        if step < warmup:
            return args.lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, args.steps - warmup)
        return args.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))

    model.train()
    loop_started = time.perf_counter()
    for step in range(args.steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        batch = batches.next()
        positives, same = batch["positives"], batch["same"]
        image = model.image(batch["pixels"])
        words = model.text.word_vectors(batch["rows"])[batch["index"]]
        text = model.text.contextualise(words, batch["mask"])
        scale = model.scale()
        logits = scale * text @ image.T  # [2B, B]
        loss_t2i = soft_cross_entropy(logits, positives)
        loss_i2t = soft_cross_entropy(logits.T, positives.T)
        en, ru = text[: args.batch], text[args.batch :]
        cross = scale * en @ ru.T
        loss_xl = 0.5 * (soft_cross_entropy(cross, same) + soft_cross_entropy(cross.T, same))
        loss_aux = heads.loss(image * 10.0, text * 10.0, batch)
        loss_ii = same_kind_loss(image, scale, batch)
        loss = loss_t2i + loss_i2t + 0.5 * loss_xl + args.aux * loss_aux + args.ii * loss_ii
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in params], 5.0)
        optimizer.step()
        if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
            elapsed = time.perf_counter() - loop_started
            line = (
                f"step {step + 1}/{args.steps} loss {loss.item():.3f} "
                f"(t2i {loss_t2i.item():.3f} i2t {loss_i2t.item():.3f} xl {loss_xl.item():.3f} "
                f"aux {loss_aux.item():.3f} ii {loss_ii.item():.3f}) "
                f"scale {scale.item():.1f} {elapsed:.0f}s"
            )
            if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
                line += " | " + quick_eval(model, tokenizer, val_scenes, val_pixels)
            print(line, flush=True)
    model.eval()
    model.image.to(memory_format=torch.contiguous_format)
    train_seconds = time.perf_counter() - started
    return {
        "model": model,
        "tokenizer": tokenizer,
        "train_seconds": train_seconds,
        "cpu_seconds": time.process_time() - cpu_started,
        "loop_seconds": time.perf_counter() - loop_started,
    }


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=demo_embedder.DEFAULT_MODEL_DIR)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--pool", type=int, default=30_000, help="pre-rendered training images")
    parser.add_argument("--corpus", type=int, default=80_000, help="captions for the vocabulary")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--embed-dim", type=int, default=128)
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--aux", type=float, default=0.5, help="weight of attribute heads")
    parser.add_argument("--ii", type=float, default=0.5, help="weight of image-image term")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--eval-every", type=int, default=250, help="quick validation mAP")
    parser.add_argument("--eval-images", type=int, default=2000)
    parser.add_argument("--eval-seed", type=int, default=acceptance.TEST_SEED)
    parser.add_argument("--eval-queries", type=int, default=400)
    parser.add_argument("--no-card", action="store_true", help="skip README.md")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    out: Path = args.out
    result = train(args)
    model, tokenizer = result["model"], result["tokenizer"]
    info = {
        "trained_by": "python -m imgfinder.demo.train",
        "seed": args.seed,
        "steps": args.steps,
        "batch": args.batch,
        "lr": args.lr,
        "aux": args.aux,
        "ii": args.ii,
        "pool": args.pool,
        "threads": args.threads,
    }
    save_model(model, tokenizer, out, info)
    export_onnx(model, out)
    print(f"saved and exported to {out} after {result['train_seconds']:.0f}s")

    onnx = demo_embedder.DemoEmbedder(out, runtime="onnx", threads=args.threads)
    torch_embedder = demo_embedder.DemoEmbedder(out, runtime="torch", threads=args.threads)
    metrics = acceptance.run(onnx, args.eval_images, args.eval_seed, args.eval_queries)
    parity_scenes = acceptance.test_world(min(args.eval_images, 500), args.eval_seed)
    metrics["parity"] = acceptance.parity(onnx, torch_embedder, parity_scenes)
    metrics["speed"] = acceptance.speed(demo_embedder.DemoEmbedder(out, threads=SPEED_THREADS))
    metrics["speed"]["threads"] = SPEED_THREADS
    weights = out / demo_embedder.WEIGHTS_FILE
    metrics["model"] = {
        "parameters": count_parameters(model),
        "weights_mb": weights.stat().st_size / 1e6,
        "widths": list(model.config.widths),
        "key": onnx.key,
    }
    metrics["training"] = {
        **info,
        "seconds_total": result["train_seconds"],
        "seconds_loop": result["loop_seconds"],
        "cpu_seconds": result["cpu_seconds"],
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }
    metrics["gates"] = acceptance.gates(metrics)
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    if not args.no_card:
        from imgfinder.demo.card import model_card

        atomic_write_text(out / "README.md", model_card(metrics))
    failed = [k for k, v in metrics["gates"].items() if not v["pass"]]
    print(f"gates: {len(metrics['gates']) - len(failed)} pass, failed: {failed or 'none'}")
    return metrics


if __name__ == "__main__":
    main()

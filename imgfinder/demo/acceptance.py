"""The demo model's acceptance suite: every number issue #4 asks for, on a fresh test world.

Used by the training script (to write metrics.json and the model card) and by the tests (on a
smaller set). It works with any `Embedder`, so other models can be scored on this world too.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from imgfinder import evaluation as ev
from imgfinder.demo import world
from imgfinder.embedders.base import Embedder

#: (direction, threshold) per gated metric; per-language groups are checked in each language
GATES: dict[str, tuple[str, float]] = {
    "template.mAP": (">=", 0.90),
    "template.capped_recall@5": (">=", 0.95),
    "zero_shot.accuracy": (">=", 0.90),
    "held_out_pairs.capped_recall@5": (">=", 0.85),
    "unseen_phrasing.mAP": (">=", 0.75),
    "cross_lingual.same_prompt_first": (">=", 0.95),
    "image_to_image.nn_same_colour_shape": (">=", 0.90),
    "speed.images_per_s_batch256": (">=", 1000.0),
    "speed.texts_per_s_batch256": (">=", 1000.0),
    "speed.one_text_ms_median": ("<=", 10.0),
    "parity.max_abs_diff_image": ("<=", 1e-4),
    "parity.max_abs_diff_text": ("<=", 1e-4),
    "parity.top10_agreement": (">=", 0.99),
    "model.parameters": ("<=", 2_000_000),
    "model.weights_mb": ("<=", 10.0),
}
TEST_SEED = 20240604
RENDER_SIZE = 128


def test_world(n_images: int, seed: int = TEST_SEED) -> list[world.Scene]:
    """A balanced test set over all 80 colour-shape kinds, held-out pairs included."""
    return world.make_dataset(n_images, seed)


def embed_scenes(embedder: Embedder, scenes: Sequence[world.Scene], size: int = RENDER_SIZE):
    """Render at `size` and embed through the embedder's own preprocessing (the real path)."""
    vectors = []
    for start in range(0, len(scenes), 256):
        images = [world.render(s, size, supersample=2) for s in scenes[start : start + 256]]
        vectors.append(embedder.embed_images(images))
    return np.concatenate(vectors)


def _retrieval(embedder, image_vectors, queries: world.QuerySet) -> dict[str, float]:
    search = ev.vector_search_fn(embedder.embed_texts, image_vectors)
    return ev.evaluate_text_to_image(search, queries.texts, queries.relevant, k=len(image_vectors))


def evaluate_language(
    embedder: Embedder,
    scenes: Sequence[world.Scene],
    image_vectors: np.ndarray,
    lang: str,
    seed: int,
    n_queries: int = 400,
) -> dict[str, dict[str, float]]:
    """Template, held-out-pair, unseen-phrasing retrieval and zero-shot accuracy in `lang`."""
    held_out_templates = (
        world.EN_TEMPLATES_HELD_OUT if lang == "en" else world.RU_TEMPLATES_HELD_OUT
    )
    out: dict[str, dict[str, float]] = {}
    sets = {
        "template": world.make_queries(scenes, lang, n_queries, seed, world.TRAIN_KINDS),
        "held_out_pairs": world.make_queries(
            scenes, lang, n_queries // 2, seed + 1, world.HELD_OUT_PAIRS
        ),
        "unseen_phrasing": world.make_queries(
            scenes, lang, n_queries // 2, seed + 2, templates=held_out_templates
        ),
    }
    for name, queries in sets.items():
        out[name] = _retrieval(embedder, image_vectors, queries)
    classes = list(world.ALL_KINDS)
    prompts = [world.class_prompts(c, s, lang) for c, s in classes]
    flat = embedder.embed_texts([p for group in prompts for p in group])
    class_vectors = flat.reshape(len(classes), -1, flat.shape[1]).mean(axis=1)
    class_vectors /= np.linalg.norm(class_vectors, axis=1, keepdims=True)
    labels = np.array([classes.index(s.kind) for s in scenes])
    held = np.array([s.kind in world.HELD_OUT_PAIRS for s in scenes])
    predicted = np.argmax(image_vectors @ class_vectors.T, axis=1)
    out["zero_shot"] = {
        "accuracy": ev.zero_shot_accuracy(image_vectors, labels, class_vectors),
        "accuracy_seen_pairs": float(np.mean(predicted[~held] == labels[~held])),
        "accuracy_held_out_pairs": float(np.mean(predicted[held] == labels[held])),
        "classes": float(len(classes)),
    }
    return out


def cross_lingual(
    embedder: Embedder,
    scenes: Sequence[world.Scene],
    image_vectors: np.ndarray,
    n: int,
    seed: int,
) -> dict[str, float]:
    """Same meaning in both languages: does each find the other's prompt (and image) first?

    A pool of `n` descriptions is phrased in English and in Russian; an English phrase must
    have the Russian phrase of the same description as its nearest Russian neighbour (and
    vice versa; identical descriptions count as the same). The top-1 image of both phrasings
    is also compared.
    """
    rng = np.random.default_rng(seed)
    specs = [world.describe(scenes[int(rng.integers(len(scenes)))], rng) for _ in range(n)]
    en = embedder.embed_texts([world.phrase(s, "en", rng) for s in specs])
    ru = embedder.embed_texts([world.phrase(s, "ru", rng) for s in specs])
    same = np.array([[a == b for b in specs] for a in specs])
    sims = en @ ru.T
    en_to_ru = same[np.arange(n), sims.argmax(axis=1)]
    ru_to_en = same[np.arange(n), sims.argmax(axis=0)]
    top_en = np.argmax(en @ image_vectors.T, axis=1)
    top_ru = np.argmax(ru @ image_vectors.T, axis=1)
    both_relevant = [
        s.matches(scenes[a]) and s.matches(scenes[b])
        for s, a, b in zip(specs, top_en, top_ru, strict=True)
    ]
    return {
        "same_prompt_first": float((en_to_ru.mean() + ru_to_en.mean()) / 2),
        "en_to_ru": float(en_to_ru.mean()),
        "ru_to_en": float(ru_to_en.mean()),
        "same_top1_image": float(np.mean(top_en == top_ru)),
        "both_top1_relevant": float(np.mean(both_relevant)),
        "pairs": float(n),
    }


def image_to_image(scenes: Sequence[world.Scene], image_vectors: np.ndarray) -> dict[str, float]:
    labels = [s.kind for s in scenes]
    result = ev.evaluate_image_to_image(image_vectors, labels)
    return {
        "nn_same_colour_shape": result["nn_accuracy"],
        "mAP": result["mAP"],
        "precision@5": result["precision@5"],
    }


def speed(embedder: Embedder, repeats: int = 3) -> dict[str, float]:
    """Images/s and texts/s at batch 256, and one text query's latency, best of `repeats`."""
    rng = np.random.default_rng(0)
    side = embedder.image_size
    pixels = rng.normal(0, 1, (256, 3, side, side)).astype(np.float32)
    scenes = world.make_dataset(256, 7)
    texts = [world.phrase(world.describe(s, rng), "en" if i % 2 else "ru", rng)
             for i, s in enumerate(scenes)]  # fmt: skip
    embedder.embed_prepared(pixels[:8])
    embedder.embed_texts(texts[:8])

    def best(fn, times: int) -> float:
        values = []
        for _ in range(times):
            start = time.perf_counter()
            fn()
            values.append(time.perf_counter() - start)
        return min(values)

    image_s = best(lambda: embedder.embed_prepared(pixels), repeats)
    text_s = best(lambda: embedder.embed_texts(texts), repeats)
    one = sorted(
        best(lambda t=t: embedder.embed_texts([t]), 1) for t in texts[:50]
    )  # median of 50 different queries, tokenizer cache included as in real use
    return {
        "images_per_s_batch256": 256 / image_s,
        "texts_per_s_batch256": 256 / text_s,
        "one_text_ms_median": 1000 * one[len(one) // 2],
    }


def parity(
    onnx_embedder: Embedder,
    torch_embedder: Embedder,
    scenes: Sequence[world.Scene],
    image_vectors: np.ndarray | None = None,
    n_queries: int = 200,
) -> dict[str, float]:
    """ONNX vs torch: max |difference| of embeddings, and top-10 agreement on retrieval."""
    images = [world.render(s, RENDER_SIZE, supersample=2) for s in scenes]
    a = onnx_embedder.embed_images(images) if image_vectors is None else image_vectors
    b = torch_embedder.embed_images(images)
    queries = world.make_queries(scenes, "en", n_queries // 2, 5).texts
    queries += world.make_queries(scenes, "ru", n_queries // 2, 6).texts
    qa, qb = onnx_embedder.embed_texts(queries), torch_embedder.embed_texts(queries)
    top_a = ev.rank_by_similarity(qa, a, 10)
    top_b = ev.rank_by_similarity(qb, b, 10)
    overlap = [
        len(set(x) & set(y)) / 10 for x, y in zip(top_a.tolist(), top_b.tolist(), strict=True)
    ]
    return {
        "max_abs_diff_image": float(np.abs(a - b).max()),
        "max_abs_diff_text": float(np.abs(qa - qb).max()),
        "top10_agreement": float(np.mean(overlap)),
    }


def gates(metrics: dict) -> dict[str, dict[str, float | bool | str]]:
    """Each gated metric present in `metrics` with its threshold and whether it passes."""
    out: dict[str, dict[str, float | bool | str]] = {}
    for name, (direction, threshold) in GATES.items():
        group, metric = name.split(".", 1)
        if group in metrics:
            found = {name: metrics[group].get(metric)}
        else:
            found = {
                f"{lang}.{name}": metrics.get(lang, {}).get(group, {}).get(metric)
                for lang in world.LANGUAGES
            }
        for key, value in found.items():
            if value is None:
                continue
            ok = value >= threshold if direction == ">=" else value <= threshold
            out[key] = {"value": float(value), "rule": f"{direction} {threshold:g}", "pass": ok}
    return out


def run(
    embedder: Embedder,
    n_images: int = 2000,
    seed: int = TEST_SEED,
    n_queries: int = 400,
) -> dict:
    """The whole acceptance suite (without speed and parity, which callers add)."""
    scenes = test_world(n_images, seed)
    vectors = embed_scenes(embedder, scenes)
    metrics: dict = {"test_set": {"images": n_images, "seed": seed, "render_size": RENDER_SIZE}}
    for i, lang in enumerate(world.LANGUAGES):
        metrics[lang] = evaluate_language(embedder, scenes, vectors, lang, seed + 10 * i, n_queries)
    metrics["cross_lingual"] = cross_lingual(embedder, scenes, vectors, n_queries, seed + 100)
    metrics["image_to_image"] = image_to_image(scenes, vectors)
    metrics["gates"] = gates(metrics)
    return metrics


def map_localisation(
    embedder: Embedder, scenes: int, seed: int, *, method: str = "masks", masks: int | None = None
) -> tuple[float, list[float]]:
    """The share of relevance maps that peak inside the box of the object their query names,
    over `scenes` composites of two or three objects (queries alternate Russian and English),
    and each map's seconds."""
    from imgfinder.explain import DEFAULT_MASKS, relevance_map

    rng = np.random.default_rng(seed)
    hits, seconds = 0, []
    for i in range(scenes):
        scene = world.sample_composite(rng)
        part = scene.parts[i % len(scene.parts)]
        lang = "en" if i % 2 else "ru"
        query = world.phrase(world.Spec(colour=part.colour, shape=part.shape), lang, rng)
        target = embedder.embed_texts([query])[0]
        image = world.render_composite(scene, RENDER_SIZE)
        found = relevance_map(embedder, image, target, method=method, masks=masks or DEFAULT_MASKS)
        (x, y), (left, top, right, bottom) = found.peak, part.box
        hits += left <= x <= right and top <= y <= bottom
        seconds.append(found.seconds)
    return hits / scenes, seconds

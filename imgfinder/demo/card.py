"""The demo model's card (imgfinder/demo/bundled/README.md), written from its measured metrics.

Generated rather than hand-written so the numbers in the card are always the ones measured
for the weights next to it.
"""

from __future__ import annotations

from imgfinder.demo import world
from imgfinder.evaluation import to_markdown

_ROWS = (
    ("template", "mAP"),
    ("template", "capped_recall@5"),
    ("template", "precision@5"),
    ("template", "ndcg@10"),
    ("template", "recall@10"),
    ("held_out_pairs", "capped_recall@5"),
    ("held_out_pairs", "mAP"),
    ("unseen_phrasing", "mAP"),
    ("unseen_phrasing", "capped_recall@5"),
    ("zero_shot", "accuracy"),
    ("zero_shot", "accuracy_seen_pairs"),
    ("zero_shot", "accuracy_held_out_pairs"),
)


def _fmt(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) < 0.01 and value != 0:
        return f"{value:.1e}"
    return f"{value:.3f}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def model_card(metrics: dict) -> str:
    """Markdown model card for a metrics.json produced by `imgfinder.demo.train`."""
    training = metrics["training"]
    model = metrics["model"]
    test = metrics["test_set"]
    per_language = {
        f"{group} {name}": {lang: metrics[lang][group][name] for lang in world.LANGUAGES}
        for group, name in _ROWS
    }
    gates = metrics["gates"]
    failed = [k for k, v in gates.items() if not v["pass"]]
    gate_lines = "\n".join(
        f"| {k} | {_fmt(v['value'])} | {v['rule']} | {'pass' if v['pass'] else '**FAIL**'} |"
        for k, v in gates.items()
    )
    held_out = ", ".join(f"{c} {s}" for c, s in world.HELD_OUT_PAIRS)
    cross = metrics["cross_lingual"]
    speed = metrics["speed"]
    parity = metrics["parity"]
    minutes = training["seconds_total"] / 60
    reproduced = (
        f" For these weights: {training['reproduced']}." if "reproduced" in training else ""
    )
    command = (
        f"python -m imgfinder.demo.train --steps {training['steps']} --seed {training['seed']}"
        f" --threads {training['threads']} --out imgfinder/demo/bundled"
    )
    return f"""# imgfinder demo model

A small bilingual (English + Russian) CLIP-style model that imgfinder ships so search works
offline out of the box. Image and text towers map into one 128-d space (cosine similarity).
It was trained from scratch in this repository on a synthetic world of coloured shapes that
`imgfinder/demo/world.py` generates; it knows **only that world**.

## Files

| file | what |
|---|---|
| `model.safetensors` | torch weights of both towers ({model["weights_mb"]:.1f} MB) |
| `config.json` | architecture, input size and normalisation, training settings |
| `tokenizer.json` | word vocabulary + hashed character trigrams (Cyrillic and Latin) |
| `image.onnx`, `text.onnx` | the towers exported for ONNX Runtime (opset 17, dynamic batch) |
| `metrics.json` | every number below |

Use it as the `demo` embedder: `imgfinder.embedders.families.demo.DemoEmbedder()` (ONNX Runtime, no
torch) or `DemoEmbedder(runtime="torch")`.

## Training

```
{command}
```

- {training["steps"]} steps of batch {training["batch"]} (fixed step count, not a time budget),
  seed {training["seed"]}, AdamW lr {training["lr"]} with warm-up and cosine decay,
  {_plural(training["threads"], "CPU thread")}, torch {training["torch"]}.
- Took {minutes:.1f} min wall-clock ({training["seconds_loop"] / 60:.1f} min in the training
  loop; {training.get("cpu_seconds", 0) / 60:.1f} CPU-min) on {training["machine"]}, a machine
  shared with other jobs while it ran.
- Data: {training["pool"]:,} pre-rendered 64×64 scenes (1–3 identical shapes; 10 colours ×
  8 shapes × 2 sizes × 6 backgrounds × plain/gradient/noise) with fresh captions every step,
  one English and one Russian per image, mentioning colour and shape and, at random, size,
  count and background, in ~20 phrasings per language plus synonyms and word-order variants;
  a random made-up word is inserted into 15% of captions so unknown words learn to carry
  no meaning.
- Loss: symmetric multi-positive contrastive loss (every caption is matched against every
  image it truly describes, not only its own), plus an English↔Russian caption alignment
  term, an image↔image term (same colour and shape are positives; weight
  {training.get("ii", 0)}) and training-only linear heads that read colour, shape, size,
  count and background off both embeddings (weight {training.get("aux", 0)}); the heads are
  not part of the shipped model.
- Never seen in training: the colour-shape pairs {held_out}; the phrasings «a drawing of …»,
  «a sketch depicting …», «I am looking for …», «do you have …», «рисунок …», «набросок с …»,
  «я ищу …», «есть ли у вас …» (their key words are not in the vocabulary).
- Architecture: image tower = CNN (stride-2 stem, widths {model.get("widths", "")}), average+max
  pooling, linear; text tower = per-word mean of word + trigram embeddings, 2-layer
  transformer, masked mean, linear. {model["parameters"]:,} parameters.

## Metrics

Measured on a fresh test world (seed {test["seed"]}, {test["images"]} images rendered at
{test["render_size"]} px and embedded through the ONNX embedder's own preprocessing, all 80
colour-shape kinds balanced). Relevance is exact: a query for "two small red circles" counts
only images with exactly two small red circles. mAP is over the full ranking. *Capped
recall@k* = relevant in top k / min(k, number relevant), since most queries have many
relevant images.

{to_markdown(per_language)}
- **template**: training phrasings, colour + shape with random size/count/background variants,
  colour-shape pairs seen in training.
- **held_out_pairs**: queries for the 8 colour-shape pairs never seen in training.
- **unseen_phrasing**: the held-out phrasings above.
- **zero_shot**: classification of every test image into the 80 colour × shape classes.

Cross-lingual (same description phrased in both languages, {int(cross["pairs"])} pairs): the
nearest prompt in the other language is the same description in
{_fmt(cross["same_prompt_first"])} of cases (en→ru {_fmt(cross["en_to_ru"])},
ru→en {_fmt(cross["ru_to_en"])}); both top-1 images are relevant in
{_fmt(cross["both_top1_relevant"])} of cases (the very same image in
{_fmt(cross["same_top1_image"])}).

Image→image: the nearest other image has the same colour and shape in
{_fmt(metrics["image_to_image"]["nn_same_colour_shape"])} of cases (this depends on how many
images of each kind the collection has: here {test["images"] // 80}).

Speed (ONNX Runtime, {_plural(speed.get("threads", 2), "thread")}, on a machine shared with
other jobs, so a lower bound):
{_fmt(speed["images_per_s_batch256"])} images/s and {_fmt(speed["texts_per_s_batch256"])}
texts/s at batch 256; one text query {speed["one_text_ms_median"]:.2f} ms.
ONNX vs torch: max |Δ| {parity["max_abs_diff_image"]:.1e} (images),
{parity["max_abs_diff_text"]:.1e} (texts); top-10 agreement {parity["top10_agreement"]:.3f}.

### Acceptance gates

| metric | value | rule | result |
|---|---|---|---|
{gate_lines}

{"All gates pass." if not failed else "Failing: " + ", ".join(failed) + "."}

## Reproducibility

Data come from seeded generators and the loop runs in one process with deterministic torch
algorithms, so the same command on the same thread count gives the same weights (the tests
train twice for a few steps and compare them bit for bit).{reproduced} Use `--threads 2` on an idle
machine (faster, slightly different weights); on a busy one a single thread is faster
because two OpenMP threads spin waiting for each other.

## Limits

- It knows only its synthetic world: flat single-colour shapes (circle, square, triangle,
  star, heart, cross, ring, arrow) in 10 colours, small or large, one to three identical
  objects per image, on white, black, grey, blue, green or yellow backgrounds. Real photos
  get embeddings, but their ranking means little beyond dominant colours.
- One kind of object per image: it was never shown "a red circle and a blue star".
- No positions ("on the left"), no counts above three, no other words than its world's;
  unknown words are mostly ignored, which is what makes new phrasings work.
- English and Russian only. Russian morphology is handled for the forms the generator
  produces (all six cases, both numbers, numerals 1–3); unusual forms fall back on trigrams.
- Images are centre-cropped and reduced to 64×64, so detail smaller than ~8 px is lost.
"""

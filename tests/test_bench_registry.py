"""The registry sweep of bench_models.py: which networks it measures, and how it reports them.

The sweep itself exports and times real-size networks (minutes); these checks cover what
decides its table without building a model.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import bench_registry  # noqa: E402

from imgfinder.embedders import registry  # noqa: E402
from imgfinder.embedders.tokenizers.yttm import RuClipTokenizer  # noqa: E402


def test_every_registry_key_is_measured_once_or_said_why_not(tmp_path: Path) -> None:
    targets, unmeasured = bench_registry.registry_targets(tmp_path)
    keys = [info.key for info in registry.list_models(tmp_path)]
    counted = [key for t in targets for key in t.keys] + [u["key"] for u in unmeasured]
    assert sorted(counted) == sorted(keys), "each key in exactly one row"
    assert targets[0].name == bench_registry.REFERENCE, "the reference is measured first"
    networks = [bench_registry.json.dumps(t.config, sort_keys=True) for t in targets]
    assert len(set(networks)) == len(networks), "no network measured twice"
    by_key = {key: t for t in targets for key in t.keys}
    if "ruclip-vit-base-patch32-224" in by_key:
        assert by_key["ruclip-vit-base-patch32-224"] is targets[0], "same shapes as ViT-B-32"
    assert all(t.calibrate_bn for t in targets if t.name.startswith("MobileCLIP"))
    assert (
        by_key["tinyclip-vit-40m-32"].config
        == bench_registry.REPO_CONFIGS["TinyCLIP-ViT-40M-32-Text-19M"]
    ), "an architecture open_clip has no name for, as its authors publish it"


def test_the_ruclip_stand_in_bpe_makes_each_word_one_token(tmp_path: Path) -> None:
    path = tmp_path / "bpe.model"
    bench_registry.write_yttm_stand_in(path, bench_registry.TEXTS)
    tokenizer = RuClipTokenizer.load(path, 77)
    for text in ("a dog running on the beach", "Кошка спит на подоконнике"):
        assert len(tokenizer.encode(text)) == len(text.split()) + 2  # BOS ... EOS


def test_schedule_spends_the_gallery_after_the_probe() -> None:
    plan = bench_registry.schedule(200, 3, with_b32=True)
    assert len(plan) == 2 and sum(map(sum, plan)) == 192
    assert all(sizes.count(32) == 1 for sizes in plan)
    assert bench_registry.schedule(32, 3, with_b32=False) == [[8, 8], [8]]


def test_fidelity_counts_shared_top_10_results() -> None:
    rng = np.random.default_rng(0)
    unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
    images, texts = unit(rng.normal(size=(64, 16))), unit(rng.normal(size=(32, 16)))
    same = bench_registry.fidelity({"fp32": images, "int8": images}, {"fp32": texts, "int8": texts})
    assert same["top10_overlap_text"] == same["top10_overlap_image"] == 1.0
    assert same["gallery"] == 64 and same["text_queries"] == bench_registry.QUERY_COUNT
    shuffled = {"fp32": images, "int8": images[::-1].copy()}
    other = bench_registry.fidelity(shuffled, {"fp32": texts, "int8": texts})
    assert other["top10_overlap_image"] < 0.5 and other["min_cosine_images"] < 0.9


def test_the_report_names_the_fastest_model_at_twice_the_reference() -> None:
    def row(name: str, fp32: float, int8: float, top1: float | None) -> dict:
        return {
            "name": name,
            "kind": "open_clip",
            "keys": [name.lower()],
            "top1": {name.lower(): top1},
            "notes": [],
            "export": {"seconds": 1.0, "tokenizer": "clip-bpe"},
            "images_per_s_batch_8": {"fp32": fp32 * 10, "int8": int8 * 10},
            "images_per_s_batch_32": {"fp32": None, "int8": None},
            "texts_per_s_batch_32": {"fp32": 50.0, "int8": 90.0},
            "reference_images_per_s_batch_8": {"fp32": 10.0, "int8": 10.0},
            "vs_reference_batch_8": {"fp32": fp32, "int8": int8},
            "gallery": 200,
            "rounds": 3,
            "min_cosine_images": 0.999,
            "min_cosine_texts": 0.998,
        }

    rows = [
        row("ViT-B-32", 1.0, 1.0, 63.3),
        row("Fast", 3.0, 1.5, 70.0),
        row("Faster", 4.0, 2.5, None),
    ]
    section = {
        "rows": rows,
        "unmeasured": [{"key": "x", "architecture": "X", "reason": "needs a download"}],
        "rounds": 3,
        "export_wall_seconds": 1.0,
        "photo_size": [320, 240],
    }
    text = bench_registry.markdown(section)
    assert "fp32, batch 8: the fastest model reaching ≥ 2× ViT-B-32 is Faster" in text
    assert "the most accurate of them (ImageNet top-1): Fast (fast 70.0)" in text
    assert "int8, batch 8: the fastest model reaching ≥ 2× ViT-B-32 is Faster" in text
    assert "| X | x | not measured: needs a download" in text
    assert "| Fast | fast (70.0) | 30.0 | 15.0 | 3.00 | 1.50 |" in text

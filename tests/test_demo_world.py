"""The synthetic world: Russian agreement, English number, determinism, splits, demo folder."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from imgfinder.demo import world
from imgfinder.demo.tokenizer import Tokenizer, split_words

RED = world.RuAdjective("красн")
BLUE = world.RuAdjective("син", "soft")
SMALL = world.RuAdjective("маленьк", "velar")
BIG = world.RuAdjective("больш", "stressed")
CIRCLE = world.SHAPES[world.SHAPE_NAMES.index("circle")].ru[0]
STAR = world.SHAPES[world.SHAPE_NAMES.index("star")].ru[0]
HEART = world.SHAPES[world.SHAPE_NAMES.index("heart")].ru[0]


def test_adjective_agreement_by_gender_case_number():
    assert f"{RED.form('m', 'nom')} {CIRCLE.form('nom')}" == "красный круг"
    assert f"{RED.form('f', 'nom')} {STAR.form('nom')}" == "красная звезда"
    assert f"{RED.form('n', 'nom')} {HEART.form('nom')}" == "красное сердце"
    assert f"фото {RED.form('m', 'gen')} {CIRCLE.form('gen')}" == "фото красного круга"
    assert f"на {world._BG_RU['white'].form('m', 'prep')} фоне" == "на белом фоне"
    assert RED.form("f", "acc") == "красную"
    assert BLUE.form("f", "nom") == "синяя"
    assert BLUE.form("m", "gen") == "синего"
    assert BLUE.form("f", "acc") == "синюю"
    assert BLUE.form("m", "prep") == "синем"
    assert SMALL.form("pl", "nom", "pl") == "маленькие"
    assert BIG.form("m", "nom") == "большой"
    assert BIG.form("f", "ins") == "большой"
    assert BIG.form("m", "gen", "pl") == "больших"
    assert STAR.form("gen", "pl") == "звёзд"


def test_russian_counts_agree():
    phrase = world.ru_noun_phrase
    assert phrase(STAR, [RED], "nom", count=2) == "две красные звезды"
    assert phrase(CIRCLE, [BLUE], "nom", count=3) == "три синих круга"
    assert phrase(CIRCLE, [RED], "gen", count=2) == "двух красных кругов"
    assert phrase(STAR, [BLUE], "ins", count=3) == "тремя синими звёздами"
    assert phrase(HEART, [BIG, RED], "nom", count=2) == "два больших красных сердца"
    assert phrase(STAR, [SMALL, RED], "acc", count=2) == "две маленькие красные звезды"
    assert phrase(STAR, [RED], "acc", count=1) == "одну красную звезду"
    assert phrase(CIRCLE, [RED], "nom", plural=True) == "красные круги"
    assert phrase(STAR, [BLUE], "gen", plural=True) == "синих звёзд"
    assert phrase(HEART, [SMALL], "prep") == "маленьком сердце"


def test_russian_captions_use_the_grammar():
    rng = np.random.default_rng(0)
    spec = world.Spec("red", "circle", background="white")
    texts = {world.phrase(spec, "ru", rng, ["фото {gen}{bg}"]) for _ in range(300)}
    assert "фото красного круга на белом фоне" in texts
    spec = world.Spec("red", "star", count=2)
    texts = {world.phrase(spec, "ru", rng, ["{nom}"]) for _ in range(300)}
    assert "две красные звезды" in texts
    assert texts <= {
        "две красные звезды",
        "2 красные звезды",
        "две красные звёздочки",
        "2 красные звёздочки",
        "две звезды красного цвета",
        "2 звезды красного цвета",
        "две звёздочки красного цвета",
        "2 звёздочки красного цвета",
    } | {t.capitalize() for t in texts}


def test_every_phrase_is_well_formed_in_both_languages():
    rng = np.random.default_rng(3)
    scenes = world.make_dataset(160, 11)
    for scene in scenes:
        for lang in world.LANGUAGES:
            for text in world.captions(scene, lang, rng, n=3):
                assert "{" not in text and "  " not in text and text.strip() == text
                assert split_words(text)
    texts = {world.phrase(world.Spec("orange", "arrow"), "en", rng, ["{np}"]) for _ in range(200)}
    assert "an orange arrow" in texts and "a orange arrow" not in texts


def test_english_number_and_verb_agreement():
    for seed in range(50):
        rng = np.random.default_rng(seed)
        text = world.phrase(world.Spec("red", "cross", count=3), "en", rng, ["there {be} {np}"])
        assert text.startswith("there are ") and {"crosses", "pluses"} & set(text.split())
        text = world.phrase(world.Spec("red", "cross"), "en", rng, ["{this} {np}"])
        assert text.startswith("this is ")


def test_generation_is_deterministic_from_the_seed():
    a, b = world.make_dataset(40, 5), world.make_dataset(40, 5)
    assert a == b
    assert world.make_dataset(40, 6) != a
    assert np.array_equal(np.asarray(world.render(a[0], 64)), np.asarray(world.render(b[0], 64)))
    caps = [world.captions(a[1], "ru", np.random.default_rng(1)) for _ in range(2)]
    assert caps[0] == caps[1]


def test_scenes_fit_and_do_not_overlap():
    for scene in world.make_dataset(400, 9):
        assert scene.background != scene.colour
        assert len(scene.objects) == scene.count
        for i, (x, y, r, _) in enumerate(scene.objects):
            assert r <= x <= 1 - r and r <= y <= 1 - r
            for x2, y2, r2, _ in scene.objects[i + 1 :]:
                assert np.hypot(x - x2, y - y2) > r + r2
        assert (scene.size == "small") == (scene.objects[0][2] < 0.15)


def test_render_is_antialiased_rgb():
    scene = world.make_dataset(1, 2)[0]
    image = world.render(scene, 96)
    assert image.mode == "RGB" and image.size == (96, 96)
    plain = world.Scene(
        "red", "circle", "large", 1, "white", "plain", ((0.5, 0.5, 0.3, 0.0),),
        (220, 30, 30), (250, 250, 250), 0,
    )  # fmt: skip
    pixels = np.asarray(world.render(plain, 64))
    assert tuple(pixels[32, 32]) == (220, 30, 30)
    assert tuple(pixels[0, 0]) == (250, 250, 250)
    colours = {tuple(p) for p in pixels.reshape(-1, 3)}
    assert len(colours) > 6  # intermediate colours along the edge


def test_held_out_pairs_and_templates_stay_out_of_training():
    assert not set(world.HELD_OUT_PAIRS) & set(world.TRAIN_KINDS)
    assert {c for c, _ in world.HELD_OUT_PAIRS} < set(world.COLOUR_NAMES)
    assert {s for _, s in world.HELD_OUT_PAIRS} == set(world.SHAPE_NAMES)
    rng = np.random.default_rng(0)
    scenes = [world.sample_scene(rng) for _ in range(500)]
    assert not {s.kind for s in scenes} & set(world.HELD_OUT_PAIRS)
    train_words = {
        w
        for s in scenes
        for lang in world.LANGUAGES
        for text in world.captions(s, lang, rng, n=4)
        for w in split_words(text)
    }
    for word in ("drawing", "sketch", "looking", "рисунок", "набросок", "ищу"):
        assert word not in train_words


def test_queries_relevance_is_spec_matching():
    scenes = world.make_dataset(160, 4)
    queries = world.make_queries(scenes, "en", 20, 1)
    for spec, relevant in zip(queries.specs, queries.relevant, strict=True):
        assert relevant == {i for i, s in enumerate(scenes) if spec.matches(s)}
        assert relevant
    plural = world.Spec("red", "circle", plural=True)
    one = world.Spec("red", "circle")
    scene = world.Scene(
        "red", "circle", "small", 1, "white", "plain", ((0.5, 0.5, 0.1, 0.0),),
        (0, 0, 0), (0, 0, 0), 0,
    )  # fmt: skip
    assert one.matches(scene) and not plural.matches(scene)


def test_class_prompts_are_grammatical():
    assert world.class_prompts("red", "star", "ru")[:2] == ["красная звезда", "фото красной звезды"]
    assert world.class_prompts("orange", "cross", "en") == [
        "an orange cross",
        "a photo of an orange cross",
        "orange crosses",
    ]


def test_write_demo_folder(tmp_path):
    labels = world.write_demo_folder(tmp_path / "demo", 30, seed=1, size=64)
    rows = world.read_labels(labels)
    assert len(rows) == 30
    assert {r["path"].split("/")[0] for r in rows} > {"album_00"}
    assert any(r["path"].endswith(".png") for r in rows)
    for row in rows[:5]:
        with Image.open(labels.parent / row["path"]) as image:
            assert image.size == (64, 64)
        assert row["colour"] in world.COLOUR_NAMES and row["shape"] in world.SHAPE_NAMES
        assert row["caption_ru"] and row["caption_en"]
    scenes = world.scenes_from_labels(rows)
    original = world.make_dataset(30, 1)
    assert [(*s.kind, s.size, s.count, s.background) for s in scenes] == [
        (*s.kind, s.size, s.count, s.background) for s in original
    ]
    queries = world.make_queries(scenes, "ru", 5, 0)
    assert all(queries.relevant)


def test_tokenizer_handles_cyrillic_and_latin(tmp_path):
    tok = Tokenizer.build(["красная звезда", "красная звезда", "a red star", "a red star"])
    assert split_words("Ёжик, ЗВЁЗДЫ & Stars!") == ["ежик", "звезды", "stars"]
    ids = tok.encode(["Красная ЗВЕЗДА", "a red star", ""])
    assert ids.shape == (3, tok.max_words, tok.max_features)
    assert (ids[2] == 0).all()
    known = ids[0, 0, 0]
    assert known > 1 and ids[0, 0, 1] > 0
    unknown = tok.encode(["зелёная"])[0, 0]
    assert unknown[0] == 1 and (unknown[1:] > 0).sum() == len("<зеленая>") - 2
    tok.save(tmp_path / "t.json")
    again = Tokenizer.load(tmp_path / "t.json")
    assert np.array_equal(again.encode(["красная звезда"]), tok.encode(["красная звезда"]))
    long = tok.encode(["ж" * 40])[0, 0]
    assert (long > 0).sum() == tok.max_features


@pytest.mark.parametrize("lang", world.LANGUAGES)
def test_captions_mention_the_attributes(lang):
    rng = np.random.default_rng(0)
    spec = world.Spec("yellow", "heart", size="small", count=2, background="blue")
    text = world.phrase(spec, lang, rng)
    words = set(split_words(text))
    if lang == "en":
        assert words & {"yellow"} and words & {"hearts"} and words & {"blue"}
        assert words & {"two", "2", "pair"} and words & {"small", "little", "tiny"}
    else:
        assert any(w.startswith("желт") for w in words) and any(w.startswith("син") for w in words)
        assert words & {"два", "2", "двух", "двумя"}

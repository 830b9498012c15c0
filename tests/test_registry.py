"""The model registry: every entry is valid, presence is detected, failures are one sentence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imgfinder.embedders import registry
from imgfinder.embedders.registry import (
    ModelInfo,
    create_embedder,
    default_model_key,
    get_model,
    list_models,
    missing_message,
    models_dir,
    pull,
    repo_dir,
)
from imgfinder.errors import ConfigError, ModelError


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test ever reaches the network, whatever machine it runs on."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(-2, "Name or service not known")

    monkeypatch.setattr(registry.socket, "create_connection", refuse)


def fake_files(info: ModelInfo, model_dir: Path, use_alternative: bool = False) -> Path:
    directory = repo_dir(str(info.hf_repo), model_dir)
    directory.mkdir(parents=True, exist_ok=True)
    for item in info.files:
        names = item.split("|")
        (directory / names[-1 if use_alternative else 0]).write_bytes(b"x")
    return directory


def test_import_is_light() -> None:
    code = (
        "import sys\n"
        "from imgfinder.embedders.registry import list_models, missing_message\n"
        "assert all(missing_message(i) for i in list_models())\n"
        "assert 'torch' not in sys.modules and 'open_clip' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_every_entry_is_valid() -> None:
    import open_clip

    models = list_models()
    keys = [info.key for info in models]
    assert len(keys) == len(set(keys)) and default_model_key() == "demo" in keys
    for info in models:
        assert info.family in registry.FAMILIES
        assert info.description and info.languages and info.licence and info.size_mb > 0
        assert info.files, info.key
        assert info.image_size and 0 < info.threshold < 1, info.key
        if info.family == "demo":
            config = json.loads((registry.folder(info) / "config.json").read_text())
            assert config["image_size"] == info.image_size
            continue
        assert info.url == f"https://huggingface.co/{info.hf_repo}"
        assert missing_message(info).count(".") <= 8  # one sentence, file names aside
        if info.family == "open_clip" and info.pretrained is None:  # its repository says
            assert "open_clip_config.json" in info.files, info.key
        elif info.family == "open_clip":
            config = open_clip.get_model_config(info.architecture)
            assert config is not None, info.key
            assert config["vision_cfg"]["image_size"] == info.image_size, info.key
            tag = open_clip.get_pretrained_cfg(info.architecture, info.pretrained)
            assert tag, f"{info.key}: open_clip has no tag {info.pretrained}"
            assert tag["hf_hub"].strip("/").split("/")[:2] == info.hf_repo.split("/"), info.key
        elif info.family == "immich":
            from imgfinder.embedders.families.immich import FILES

            assert info.hf_repo.startswith("immich-app/") and info.files == FILES, info.key
        else:
            assert info.hf_repo == f"ai-forever/{info.architecture}"
            assert set(info.files) == {"config.json", "bpe.model", "pytorch_model.bin"}
            assert info.architecture.endswith(str(info.image_size))
    wanted = {
        "clip-vit-b-32",
        "clip-vit-b-16",
        "clip-vit-l-14",
        "laion-vit-b-32",
        "xlm-roberta-base-vit-b-32",
        "siglip2-vit-b-16",
        "ruclip-vit-base-patch32-224",
        "ruclip-vit-base-patch16-224",
        "ruclip-vit-base-patch32-384",
        "ruclip-vit-large-patch14-224",
        "ruclip-vit-large-patch14-336",
        "mobileclip-s1",
        "mobileclip-s2",
        "mobileclip2-s0",
        "mobileclip2-s2",
        "datacomp-vit-b-32-256",
        "siglip2-vit-b-32-256",
    }
    assert wanted <= set(keys)
    published = [info.imagenet_top1 for info in models if info.imagenet_top1 is not None]
    assert len(published) >= 12 and all(50 < value < 90 for value in published)


def test_measured_speeds_are_the_bench_s_own() -> None:
    """Each entry's `images_per_s` is what bench_models measured for its architecture."""
    results = Path(__file__).parents[1] / "bench" / "results" / "models.json"
    rows = json.loads(results.read_text())["registry"]["rows"]
    measured: dict[str, set[tuple[float, float]]] = {}
    for row in rows:
        speed = row.get("images_per_s_batch_32") or {}
        for key in row["keys"]:
            measured.setdefault(key, set()).add((speed.get("fp32"), speed.get("int8")))
    with_speed = [info for info in list_models() if info.images_per_s]
    assert len(with_speed) >= 10
    for info in with_speed:
        speeds = dict(info.images_per_s)
        assert (speeds["fp32"], speeds["int8"]) in measured[info.key], info.key


TINY_ENTRY = """
[[model]]
key = "tiny-from-the-hub"
family = "open_clip"
architecture = "tiny-vit"
hf_repo = "someone/tiny-clip"
files = ["open_clip_model.safetensors", "open_clip_config.json"]
languages = ["en"]
image_size = 32
licence = "MIT"
threshold = 0.2
size_mb = 1
description = "A tiny model a user added by writing this entry"
"""


def test_a_new_architecture_needs_only_a_models_toml_entry(tmp_path: Path) -> None:
    """An entry in the models folder's models.toml, and the repository's files as a pull
    fetches them: no code names the architecture, and the weights are the file's."""
    open_clip = pytest.importorskip("open_clip")
    import torch
    from safetensors.torch import save_file

    from imgfinder.embedders.families.openclip import OpenClipEmbedder

    model_cfg = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16},
        "text_cfg": {"context_length": 12, "vocab_size": 49408, "width": 64, "layers": 1},
    }
    (tmp_path / "models.toml").write_text(TINY_ENTRY)
    repo = repo_dir("someone/tiny-clip", tmp_path)
    repo.mkdir(parents=True)
    config = {"model_cfg": model_cfg, "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3}}
    (repo / "open_clip_config.json").write_text(json.dumps(config))
    torch.manual_seed(5)
    model = open_clip.create_model(f"local-dir:{repo}").eval()
    state = {name: value.contiguous() for name, value in model.state_dict().items()}
    save_file(state, str(repo / "open_clip_model.safetensors"))

    listed = {info.key: info for info in list_models(tmp_path)}
    assert listed["tiny-from-the-hub"].present and "tiny-from-the-hub" not in {
        info.key for info in list_models(tmp_path / "elsewhere")
    }
    embedder = create_embedder("tiny-from-the-hub", model_dir=tmp_path, runtime="onnx")
    texts = ["a red car", "a blue sky"]
    vectors = embedder.embed_texts(texts)
    assert vectors.shape == (2, 16) and embedder.mean == (0.5, 0.5, 0.5)
    with torch.no_grad():
        expected = model.encode_text(open_clip.get_tokenizer(f"local-dir:{repo}")(texts))
    expected = torch.nn.functional.normalize(expected, dim=-1).numpy()
    assert (vectors * expected).sum(axis=1).min() > 0.9999
    random = OpenClipEmbedder("ViT-B-32").key
    assert embedder.key.startswith("open_clip:tiny-vit:dir-") and embedder.key != random


def test_tinyclip_loads_from_its_repository_s_own_config(tmp_path: Path) -> None:
    """TinyCLIP's registry entry needs no loader: its repository's open_clip_config.json (here
    its towers' widths and patch at one layer each, random weights) is what builds it."""
    open_clip = pytest.importorskip("open_clip")
    import torch
    from safetensors.torch import save_file

    info = get_model("tinyclip-vit-40m-32")
    assert info.pretrained is None and "open_clip_config.json" in info.files
    repo = repo_dir(str(info.hf_repo), tmp_path)
    repo.mkdir(parents=True)
    model_cfg = {
        "embed_dim": 512,
        "vision_cfg": {"image_size": 224, "layers": 1, "width": 512, "patch_size": 32},
        "text_cfg": {
            "context_length": 77,
            "vocab_size": 49408,
            "width": 512,
            "heads": 8,
            "layers": 1,
        },
    }
    (repo / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg}))
    torch.manual_seed(3)
    model = open_clip.create_model(f"local-dir:{repo}").eval()
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(repo / "open_clip_model.safetensors"),
    )
    assert {i.key: i for i in list_models(tmp_path)}["tinyclip-vit-40m-32"].present
    embedder = create_embedder("tinyclip-vit-40m-32", model_dir=tmp_path, runtime="onnx")
    vectors = embedder.embed_texts(["a dog on a beach"])
    with torch.no_grad():
        tokens = open_clip.get_tokenizer(f"local-dir:{repo}")(["a dog on a beach"])
        expected = torch.nn.functional.normalize(model.encode_text(tokens), dim=-1).numpy()
    assert vectors.shape == (1, 512) and float((vectors * expected).sum()) > 0.9999
    assert embedder.languages == ("en",)


def test_a_bad_user_entry_names_its_file(tmp_path: Path) -> None:
    (tmp_path / "models.toml").write_text(TINY_ENTRY.replace(', "open_clip_config.json"', ""))
    with pytest.raises(ConfigError, match=r"open_clip_config\.json"):
        list_models(tmp_path)
    (tmp_path / "models.toml").write_text(TINY_ENTRY.replace("tiny-from-the-hub", "demo"))
    with pytest.raises(ConfigError, match="demo"):
        list_models(tmp_path)


def test_unknown_key_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="known models: demo, clip-vit-b-32"):
        get_model("no-such-model")
    with pytest.raises(ConfigError):
        create_embedder("no-such-model")
    with pytest.raises(ConfigError, match="runtime"):
        create_embedder("demo", runtime="tpu")


def test_models_dir_default_and_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("IMGFINDER_MODEL_DIR", raising=False)
    monkeypatch.setenv("IMGFINDER_DATA_DIR", str(tmp_path / "data"))
    assert models_dir() == tmp_path / "data" / "models"
    monkeypatch.setenv("IMGFINDER_MODEL_DIR", str(tmp_path))
    assert models_dir() == tmp_path
    assert repo_dir("ai-forever/ruclip-vit-base-patch32-224") == (
        tmp_path / "ai-forever--ruclip-vit-base-patch32-224"
    )


def test_presence_detection(tmp_path: Path) -> None:
    ruclip = get_model("ruclip-vit-base-patch32-224")
    laion = get_model("laion-vit-b-32")
    assert not registry.locate(ruclip, tmp_path).present
    directory = fake_files(ruclip, tmp_path)
    (directory / "pytorch_model.bin").unlink()
    assert not registry.locate(ruclip, tmp_path).present
    fake_files(ruclip, tmp_path)
    fake_files(laion, tmp_path, use_alternative=True)
    found = {info.key: info for info in list_models(tmp_path)}
    assert found["ruclip-vit-base-patch32-224"].present
    assert found["ruclip-vit-base-patch32-224"].path == directory
    assert found["laion-vit-b-32"].present
    assert not found["clip-vit-l-14"].present and found["clip-vit-l-14"].path is None


def test_missing_model_is_a_model_error_not_a_hang(tmp_path: Path) -> None:
    started = time.perf_counter()
    with pytest.raises(ModelError) as caught:
        create_embedder("ruclip-vit-base-patch32-224", model_dir=tmp_path)
    message = str(caught.value)
    assert "bpe.model" in message and "about 605 MB" in message
    assert "https://huggingface.co/ai-forever/ruclip-vit-base-patch32-224" in message
    assert str(tmp_path / "ai-forever--ruclip-vit-base-patch32-224") in message
    assert time.perf_counter() - started < 2


def test_requirements_are_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    info = get_model("siglip2-vit-b-16")
    fake_files(info, tmp_path)
    real = registry.importlib.util.find_spec
    monkeypatch.setattr(
        registry.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "transformers" else real(name, *a),
    )
    with pytest.raises(ModelError, match="pip install transformers"):
        create_embedder("siglip2-vit-b-16", model_dir=tmp_path)


def test_open_clip_entry_builds_lazily(tmp_path: Path) -> None:
    fake_files(get_model("laion-vit-b-32"), tmp_path)
    embedder = create_embedder("laion-vit-b-32", model_dir=tmp_path, runtime="torch")
    assert type(embedder).__name__ == "OpenClipEmbedder"
    assert embedder.key == "open_clip:ViT-B-32:laion2b_s34b_b79k:torch-fp32"
    auto = create_embedder("laion-vit-b-32", model_dir=tmp_path)
    assert auto.key.endswith(":onnx-fp32")
    with pytest.raises(ModelError, match="cannot load"):
        embedder.embed_texts(["the weights file is fake"])


def test_demo_entry() -> None:
    info = registry.locate(get_model("demo"))
    if info.present:
        assert type(create_embedder("demo")).__name__ == "DemoEmbedder"
    else:
        with pytest.raises(ModelError, match="train"):
            create_embedder("demo")


@pytest.mark.usefixtures("offline")
def test_pull_offline_fails_fast(tmp_path: Path) -> None:
    started = time.perf_counter()
    with pytest.raises(ModelError) as caught:
        pull("laion-vit-b-32", model_dir=tmp_path)
    message = str(caught.value)
    assert message.startswith("cannot reach https://huggingface.co")
    assert "open_clip_model.safetensors" in message and "\n" not in message
    assert time.perf_counter() - started < 2


@pytest.mark.usefixtures("offline")
def test_pull_of_the_bundled_demo_never_downloads() -> None:
    if registry.locate(get_model("demo")).present:
        assert pull("demo").present
    else:
        with pytest.raises(ModelError, match="train"):
            pull("demo")


@pytest.mark.usefixtures("offline")
def test_pull_of_a_present_model_needs_no_network(tmp_path: Path) -> None:
    fake_files(get_model("ruclip-vit-base-patch32-224"), tmp_path)
    assert pull("ruclip-vit-base-patch32-224", model_dir=tmp_path).present


def test_pull_respects_hf_hub_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelError, match="HF_HUB_OFFLINE"):
        pull("clip-vit-b-32", model_dir=tmp_path)


def test_hub_offline_restores_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    before = constants.HF_HUB_OFFLINE
    with registry.hub_offline():
        assert constants.HF_HUB_OFFLINE is True
        assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert before == constants.HF_HUB_OFFLINE
    assert "HF_HUB_OFFLINE" not in os.environ


def test_ruclip_entry_builds_lazily(tmp_path: Path) -> None:
    fake_files(get_model("ruclip-vit-base-patch32-224"), tmp_path)
    embedder = create_embedder("ruclip-vit-base-patch32-224", model_dir=tmp_path, runtime="torch")
    assert type(embedder).__name__ == "RuClipEmbedder"
    assert embedder.key.startswith("ruclip:ruclip-vit-base-patch32-224:")
    with pytest.raises(ModelError):
        embedder.embed_texts(["the config is fake"])


def test_pull_downloads_safetensors_or_falls_back_to_the_pickle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The download path itself, with the hub replaced by a fake that lacks safetensors."""
    import huggingface_hub
    from huggingface_hub.errors import EntryNotFoundError

    asked: list[tuple[str, str]] = []

    def fake_download(repo_id: str, filename: str, local_dir: Path | None = None) -> str:
        asked.append((repo_id, filename))
        if filename.endswith(".safetensors"):
            raise EntryNotFoundError(f"{repo_id} has no {filename}")
        target = Path(str(local_dir)) / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"weights")
        return str(target)

    monkeypatch.setattr(registry, "check_online", lambda: None)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    told: list[tuple[int, int, str]] = []
    info = pull("clip-vit-b-32", model_dir=tmp_path, progress=lambda *step: told.append(step))
    assert told == [(0, 1, "open_clip_model.safetensors"), (1, 1, "")]
    repo = "timm/vit_base_patch32_clip_224.openai"
    assert asked == [(repo, "open_clip_model.safetensors"), (repo, "open_clip_pytorch_model.bin")]
    assert info.present and info.path == tmp_path / repo.replace("/", "--")
    assert (info.path / "open_clip_pytorch_model.bin").read_bytes() == b"weights"


def test_pull_puts_a_text_towers_files_in_the_model_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    calls: list[tuple[str, str, dict[str, object]]] = []

    def fake_download(repo_id: str, filename: str, **where: object) -> str:
        calls.append((repo_id, filename, where))
        return str(tmp_path / "x")

    monkeypatch.setattr(registry, "check_online", lambda: None)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    info = get_model("xlm-roberta-base-vit-b-32")
    pull(info.key, model_dir=tmp_path)
    extras = [(repo, name, where) for repo, name, where in calls if repo == "xlm-roberta-base"]
    assert [name for _, name, _ in extras] == list(info.extra_files[0][1])
    assert all(where == {"cache_dir": tmp_path / "hub"} for _, _, where in extras)
    assert registry.hub_cache_dir(tmp_path) == tmp_path / "hub"

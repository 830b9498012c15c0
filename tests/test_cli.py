"""The CLI: index with a summary, search as text or JSON, info, one-line errors."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ColorEmbedder, make_image
from typer.testing import CliRunner

from imgfinder import cli
from imgfinder.errors import ConfigError


@pytest.fixture(autouse=True)
def color_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every model key resolves to the colour embedder, so the CLI runs offline: the library's
    registry for indexing, the facade's factory hook for searching."""
    monkeypatch.setattr(
        "imgfinder.embedders.registry.create_embedder", lambda key, **_: ColorEmbedder()
    )
    monkeypatch.setenv("IMGFINDER_EMBEDDER_FACTORY", "test_webapp:color_embedder")


def run(*args: str) -> tuple[int, str, str]:
    runner = CliRunner()
    try:
        result = runner.invoke(cli.app, list(args), catch_exceptions=False)
    except SystemExit as exc:  # pragma: no cover - typer exits through SystemExit
        return int(exc.code or 0), "", ""
    return result.exit_code, result.stdout, result.stderr


def test_index_search_info(photo_folder: Path, tmp_path: Path) -> None:
    collection = str(tmp_path / "col")
    (photo_folder / "broken.jpg").write_text("not an image")
    code, out, _ = run("index", str(photo_folder), "-c", collection, "--json")
    assert code == 0, out
    summary = json.loads(out)
    assert summary["indexed"] == 12 and summary["skipped"] == 1
    assert summary["skipped_files"][0]["path"].endswith("broken.jpg")

    code, out, _ = run("index", str(photo_folder), "-c", collection)
    assert code == 0 and "unchanged" in out and "12" in out

    code, out, _ = run("index", str(photo_folder), "-c", str(tmp_path / "human"), "--profile")
    assert code == 0 and re.search(r"skipped: not an image\S* *│ *1 ", out), out
    broken = photo_folder / "broken.jpg"
    assert f"skipped {broken}: not an image: cannot identify image file\n" in out
    assert "where the time went" in out and re.search(r"decoding, CPU per image *│ *[\d.]+ ms", out)
    assert re.search(r"peak memory *│ *[\d.]+ MB", out), out

    code, out, _ = run("search", "red", "-c", collection, "-k", "3", "--json")
    hits = json.loads(out)
    assert code == 0 and len(hits) == 3
    assert all(Path(h["path"]).name.startswith("red") for h in hits)

    code, out, _ = run("search", "blue", "-c", collection, "-k", "2")
    lines = [line for line in out.splitlines() if line.strip()]
    assert code == 0 and len(lines) == 2 and "blue" in lines[0]

    query = photo_folder / "g" / "green_0.jpg"
    code, out, _ = run("search", "--image", str(query), "-c", collection, "--json", "-k", "1")
    assert code == 0 and json.loads(out)[0]["path"] == str(query)

    code, out, _ = run(
        "search", "yellow", "-c", collection, "-i", "faiss", "-p", "factory=Flat", "--json"
    )
    assert code == 0 and Path(json.loads(out)[0]["path"]).name.startswith("yellow")

    code, out, _ = run("info", "-c", collection, "--json")
    assert code == 0 and json.loads(out)["images"] == 12


def test_only_images_or_only_videos(tmp_path: Path) -> None:
    from test_video_search import event_video

    make_image(tmp_path / "media" / "red_photo.png", "red")
    event_video(tmp_path / "media" / "clip.mp4", [("red", 3.0, 5.0)], 8.0)
    collection = str(tmp_path / "col")
    sampling = ["--every", "2", "--no-scene-cuts"]
    code, out, _ = run("index", str(tmp_path / "media"), "-c", collection, *sampling, "--json")
    assert code == 0 and json.loads(out)["frames"] == 4  # 0, 2, 4 and 6 s of an 8 s clip

    code, out, _ = run("search", "red", "-c", collection, "--only", "video", "--json")
    assert code == 0 and {h["kind"] for h in json.loads(out)} == {"video"}
    code, out, _ = run("search", "red", "-c", collection, "--only", "image", "--json")
    assert code == 0 and [Path(h["path"]).name for h in json.loads(out)] == ["red_photo.png"]
    code, out, _ = run("search", "red", "-c", collection, "--only", "video", "-k", "1")
    assert code == 0 and re.fullmatch(
        r".*clip\.mp4  00:00:0\d–00:00:0\d  [\d.]+  confidence [\d.]+  \d{4}-\d\d-\d\d \d\d:\d\d\n",
        out,
    )


def test_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    make_image(tmp_path / "a" / "red_1.png")
    argv = sys.argv
    for args in (
        ["info", "-c", str(tmp_path / "missing")],
        ["search", "-c", str(tmp_path / "c")],
        ["search", "red", "-c", str(tmp_path / "typo")],
        ["index", str(tmp_path / "a"), "-c", str(tmp_path / "c"), "-i", "nope"],
        ["search", "red", "-c", str(tmp_path / "c"), "--only", "photos"],
        ["index", str(tmp_path / "a"), "-c", "/proc/no-such-place/c"],
        ["index", str(tmp_path / "no-such-folder"), "-c", str(tmp_path / "new")],
    ):
        sys.argv = ["imgfinder", *args]
        try:
            with pytest.raises(SystemExit) as exited:
                cli.main()
        finally:
            sys.argv = argv
        assert exited.value.code == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "new").exists(), "no empty collection for a path that is not there"


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback(tmp_path: Path, where: str) -> None:
    """Before or after the subcommand, as people type it."""
    import sys

    from imgfinder.errors import ImgFinderError

    argv = sys.argv
    command = ["info", "-c", str(tmp_path / "missing")]
    sys.argv = [
        "imgfinder",
        *(["--debug", *command] if where == "before" else [*command, "--debug"]),
    ]
    try:
        with pytest.raises(ImgFinderError, match="missing"):
            cli.main()
    finally:
        sys.argv = argv


def test_verbose_logs_each_skipped_file_once_and_no_library_chatter(tmp_path: Path) -> None:
    import subprocess
    import sys

    folder = tmp_path / "photos"
    make_image(folder / "red.png")
    (folder / "empty.jpg").write_bytes(b"")
    command = [sys.executable, "-m", "imgfinder", "-v", "index", str(folder), "-m", "demo"]
    command += ["-c", str(tmp_path / "collection"), "-i", "faiss"]
    env = {k: v for k, v in os.environ.items() if k != "IMGFINDER_EMBEDDER_FACTORY"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    logged = [line for line in done.stderr.splitlines() if line.startswith(("INFO", "WARNING"))]
    assert logged == [f"INFO imgfinder.media.scan: skipped {folder / 'empty.jpg'}: empty file"]


def test_models_list_keeps_every_key_whole_in_80_columns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imgfinder.embedders.registry import list_models

    monkeypatch.setattr(cli.console, "width", 80)
    code, out, _ = run("models", "list", "--model-dir", str(tmp_path))
    assert code == 0
    assert max(len(line) for line in out.splitlines()) <= 80
    for info in list_models(tmp_path):
        assert re.search(rf"\b{re.escape(info.key)}\b", out), info.key


def test_demo_build_keeps_its_media_beside_the_collection(tmp_path: Path) -> None:
    """Not in whatever folder the command happens to run from."""
    target = tmp_path / "indexes" / "mini"
    code, out, err = run("demo", "build", "--collection", str(target), "--images", "12")
    assert code == 0, out + err
    assert (target / "manifest.json").is_file()
    media = tmp_path / "indexes" / "mini_media"
    assert len([p for p in media.rglob("*") if p.is_file()]) >= 12
    assert re.search(r"demo ready in [\d.]+ s: \d+ files indexed", err)


def test_search_errors_name_the_file_and_the_option(photo_folder: Path, tmp_path: Path) -> None:
    from imgfinder.errors import ConfigError, MediaError

    collection = str(tmp_path / "c")
    assert run("index", str(photo_folder), "-c", collection)[0] == 0
    fake = tmp_path / "holiday.jpg"
    fake.write_text("not a picture")
    with pytest.raises(MediaError, match=re.escape(str(fake))):
        run("search", "--image", str(fake), "-c", collection)
    with pytest.raises(ConfigError, match="--only takes image or video"):
        run("search", "red", "-c", collection, "--only", "photos")


def test_a_missing_collection_names_the_ones_beside_it(photo_folder: Path, tmp_path: Path) -> None:
    from imgfinder.errors import NotFoundError

    assert run("index", str(photo_folder), "-c", str(tmp_path / "indexes" / "demo"))[0] == 0
    with pytest.raises(NotFoundError, match=r"collections beside it: demo\)"):
        run("search", "red", "-c", str(tmp_path / "indexes" / "default"))


def test_global_flags_move_before_the_subcommand() -> None:
    assert cli.global_flags_first(["index", "x", "-v", "--debug"]) == [
        "-v",
        "--debug",
        "index",
        "x",
    ]
    assert cli.global_flags_first(["search", "--", "-v"]) == ["search", "--", "-v"]


def test_info_for_people_lists_roots_and_embedders_one_a_line(
    photo_folder: Path, tmp_path: Path
) -> None:
    collection = str(tmp_path / "c")
    assert run("index", str(photo_folder), "-c", collection)[0] == 0
    code, out, _ = run("info", "-c", collection)
    assert code == 0
    assert "roots" in out and "{" not in out and "[" not in out  # long paths wrap here
    assert re.search(r"\(model \S+, dim \d+", out)


def test_collections_are_listed_renamed_and_deleted(
    photo_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMGFINDER_DATA_DIR", str(tmp_path / "data"))
    assert run("index", str(photo_folder), "-c", "trip")[0] == 0
    code, out, _ = run("collections", "list", "--json")
    assert code == 0 and [c["name"] for c in json.loads(out)] == ["trip"]
    assert json.loads(out)[0]["images"] == 12
    code, out, _ = run("collections", "list")
    assert out.startswith("trip  12 images, 0 videos  (")
    with pytest.raises(ConfigError, match="a collection name uses"):
        run("collections", "rename", "trip", "../up")
    code, _, err = run("collections", "rename", "trip", "holiday")
    assert code == 0 and "holiday" in err
    assert run("search", "red", "-c", "holiday", "--scale", "cosine", "--threshold", "0")[0] == 0
    assert run("collections", "delete", "holiday", "--yes")[0] == 0
    assert json.loads(run("collections", "list", "--json")[1]) == []
    assert photo_folder.is_dir() and any(photo_folder.rglob("*.png"))


def test_watch_indexes_what_arrives_until_ctrl_c_and_off_stops_it(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    album = tmp_path / "album"
    make_image(album / "red_0.png", "red")
    collection = str(tmp_path / "col")
    assert run("index", str(album), "-c", collection)[0] == 0
    tests = str(Path(__file__).parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "imgfinder", "watch", "-c", collection, "--quiet", "0.3"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        first = process.stdout.readline().decode()
        assert first.startswith(f"watching {album}"), first + process.stderr.read().decode()
        make_image(album / "blue_0.png", "blue")
        line = process.stdout.readline().decode()
        assert re.match(r"re-indexed at \d\d:\d\d:\d\d: 2 items", line), line
    finally:
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=20)
    assert "stopped; the page and the API server still watch" in out.decode()
    assert json.loads((Path(collection) / "manifest.json").read_text())["watch"] is True
    code, out, _ = run("watch", "-c", collection, "--off")
    assert code == 0 and out.startswith("no longer watching")
    assert json.loads((Path(collection) / "manifest.json").read_text())["watch"] is False


def test_no_help_text_loses_its_default_to_markup() -> None:
    """Rich reads "[default: …]" as a style tag and drops it, leaving "Port ." behind."""
    import typer.main

    def commands(group: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                yield from commands(command, (*prefix, name))
            else:
                yield (*prefix, name)

    paths = list(commands(typer.main.get_command(cli.app)))
    assert ("serve",) in paths and ("labels", "set") in paths
    for path in paths:
        code, out, _ = run(*path, "--help")
        assert code == 0 and not re.search(r"\w \.(\s|$)", out), (path, out)

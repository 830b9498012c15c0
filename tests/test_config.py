"""A collection name means one collection from any folder; nothing climbs out of the data dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import ColorEmbedder, make_image
from typer.testing import CliRunner

from imgfinder.cli import app
from imgfinder.config import Settings, resolve_collection
from imgfinder.errors import ConfigError
from imgfinder.search import SearchModel


def test_names_live_in_the_data_folder_and_paths_are_paths(tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path / "data"))
    assert settings.collection_path("photos") == tmp_path / "data" / "indexes" / "photos"
    assert settings.collection_path("/srv/c") == Path("/srv/c")
    assert settings.collection_path("./here") == Path("./here")
    assert settings.collection_path("~/c") == Path.home() / "c"
    for sneaky in ("../../etc/x", "a/../../b", "..", ".", "x/y", "", "-rf", "a" * 65):
        with pytest.raises(ConfigError, match="not a collection name"):
            settings.collection_path(sneaky)
    for path_over_http in ("/etc", "./x", "~root", "~0"):
        with pytest.raises(ConfigError, match="not a collection name"):
            settings.collection_path(path_over_http, paths=False)
    with pytest.raises(ConfigError, match="no home folder"):
        settings.collection_path("~no-such-user-here")


def test_a_name_is_the_same_collection_from_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMGFINDER_DATA_DIR", str(tmp_path / "data"))
    album = tmp_path / "album"
    make_image(album / "red.png", "red")
    model = SearchModel("photos", ColorEmbedder())
    model.index([album])
    model.close()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert resolve_collection("photos") == tmp_path / "data" / "indexes" / "photos"
    shown = CliRunner().invoke(app, ["info", "-c", "photos", "--json"])
    assert shown.exit_code == 0 and '"files": 1' in shown.output
    refused = CliRunner().invoke(app, ["info", "-c", "../../etc/x"])
    assert isinstance(refused.exception, ConfigError)
    assert not (elsewhere / "indexes").exists() and not os.path.exists("/etc/x")

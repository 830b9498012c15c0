"""The result grid as a small Streamlit component: justified rows of thumbnails, badges and
a video's moments, with clicks on a tile, its moment marks and its "more like this" button
coming back to Python. Layout and wording only; the pictures come from the service."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamlit as st

from imgfinder.service import Inline, Result
from imgfinder.textfmt import display_path, shorten_middle
from imgfinder.timefmt import format_taken, format_timestamp
from imgfinder.ui import asset
from imgfinder.ui.words import counted, t

#: height of a row of thumbnails before it is stretched to the width: six 4:3 photos fit a
#: row of a 1400-pixel window with the sidebar open
ROW_HEIGHT = 108
#: pixels a character of a tile's caption takes, for cutting a name to its tile's width
CHAR_WIDTH = 6.8
_GRID = st.components.v2.component("imgfinder.grid", css=asset("grid.css"), js=asset("grid.js"))


def result_grid(
    results: list[Result],
    pictures: dict[int, Inline],
    *,
    key: str,
    on_open: Callable[[int, int | None], None],
    on_like: Callable[[int], None],
) -> None:
    """Draw the tiles; a click calls `on_open(index, moment)` or `on_like(index)` with the
    position of its result in `results` (and of the moment in a video's moments)."""
    data = {
        "row_height": ROW_HEIGHT,
        "tiles": [tile(result, pictures.get(result.hit.item_id)) for result in results],
        "like_label": t("More like this"),
        "no_preview": t("(no preview)"),
    }
    _GRID(
        data=data,
        key=key,
        on_open_change=lambda: _clicked(key, "open", lambda value: on_open(value, None)),
        on_like_change=lambda: _clicked(key, "like", on_like),
        on_moment_change=lambda: _clicked(key, "moment", lambda value: on_open(*value)),
    )


def _clicked(key: str, event: str, then: Callable[[Any], None]) -> None:
    value = getattr(st.session_state[key], event, None)
    if value is not None:
        then(value)


def tile(result: Result, picture: Inline | None) -> dict[str, Any]:
    """What one tile shows: its picture and aspect ratio, its file name (cut to fit; the
    whole path shows on hover), a score badge and, for a video, its best moment and every
    matching one on a strip."""
    hit = result.hit
    width, height = (picture.width, picture.height) if picture is not None else (4, 3)
    ratio = round(width / height, 4)
    score = f"{hit.score:.2f}"
    badge = f"{score} · {hit.confidence:.0%}" if hit.confidence is not None else score
    described = t("score {score:.3f}", score=hit.score)
    if hit.confidence is not None:
        described += t(" · confidence {confidence:.2f}", confidence=hit.confidence)
    data: dict[str, Any] = {
        "id": hit.item_id,
        "kind": hit.kind,
        "src": picture.uri if picture is not None else None,
        "ratio": ratio,
        "name": shorten_middle(Path(result.name).name, int(ratio * ROW_HEIGHT / CHAR_WIDTH)),
        "full_name": result.name,
        "title": "\n".join(
            filter(None, (display_path(hit.path), format_taken(hit.taken), described))
        ),
        "label": f"{result.name}, {described}",
        "score": hit.score,
        "badge": badge,
        "badge_help": described,
    }
    if result.moments:
        best = max(result.moments, key=lambda moment: moment.score)
        data["when"] = format_timestamp(best.t_start)
        data["moments_help"] = counted(len(result.moments), "matching moment", "matching moments")
        data["marks"] = marks(result)
    return data


def marks(result: Result) -> list[dict[str, Any]]:
    """Each moment of a video as a share of its length (its last moment's end when the
    length is unknown)."""
    length = result.duration or max(moment.t_end for moment in result.moments) or 1.0
    return [
        {
            "left": round(100 * min(moment.t_start / length, 1.0), 2),
            "width": round(100 * max(moment.t_end - moment.t_start, 0.0) / length, 2),
            "label": f"{format_timestamp(moment.t_start)}–{format_timestamp(moment.t_end)}",
        }
        for moment in result.moments
    ]

"""The search in the address bar: a reload, a bookmark or a shared link shows the same search.

On a session's first run the page's widget keys (and its language: the URL's, else the
browser's) are filled from the URL (anything that does not
parse, or names a collection or model that is not here, is ignored); after every run the URL is
rewritten from the widgets. An uploaded picture cannot travel in a URL; a "more like this" item
can, by its id.
"""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path
from typing import Any

import streamlit as st

from imgfinder.errors import ImgFinderError
from imgfinder.service import Service
from imgfinder.ui.filters import DATES_KEY, FOLDER_KEY, LABEL_KEY, URL_DATES_KEY
from imgfinder.ui.words import LANGUAGES

#: URL parameter → the widget key it fills, for the plain text and choice fields
TEXTS = {"q": "text_query", "not": "not_text", "but": "but_text"}
CUTOFF_SCALES = ("confidence", "cosine")
MAX_TEXT = 1000


def first(key: str, default: Any) -> Any:
    """A widget's initial value, unless the session or the URL has already set it (giving
    both makes Streamlit warn on the page)."""
    return None if key in st.session_state else default


def restore(service: Service, choices: dict[str, tuple[str, ...]]) -> None:
    """Fill the widgets' keys from the URL, once per session, before any widget is drawn;
    `choices` names the radio keys the URL may set and their options."""
    state = st.session_state
    if state.get("url_read"):
        return
    state.url_read = True
    params = st.query_params
    state.lang = params.get("lang") if params.get("lang") in LANGUAGES else browser_language()
    for name, key in TEXTS.items():
        if (text := params.get(name)) is not None:
            state[key] = text[:MAX_TEXT]
    for key, allowed in choices.items():
        if params.get(key) in allowed:
            state[key] = params[key]
    if params.get("scale") in CUTOFF_SCALES:
        state.scale = params["scale"]
    if (k := _number(params.get("k"), int, 1, 200)) is not None:
        state.k = k
    dates = [_date(params.get(name)) for name in ("from", "to")]
    if dates[0] and (dates[1] or dates[0]) >= dates[0]:
        state[URL_DATES_KEY] = (dates[0], dates[1] or dates[0])
    collections = {Path(path).name: str(path) for path in service.collections()}
    collection = collections.get(params.get("c", ""))
    if collection is None:
        return
    state.collection = collection
    if params.get("folder") in service.folders(collection):
        state[FOLDER_KEY] = params["folder"]
    labels = service.labels(collection)
    if labels is not None and params.get("class") in labels.names:
        state[LABEL_KEY] = params["class"]
    model = params.get("model") or service.default_model(collection)
    if model in {info.key for info in service.models()}:
        state[f"model::{collection}"] = model
        if (cutoff := _number(params.get("min"), float, 0.0, 1.0)) is not None:
            cosine = state.get("scale") == "cosine"
            state[f"threshold::{model}" if cosine else "confidence"] = cutoff
    if (item := _number(params.get("like"), int, 0, 2**63 - 1)) is not None:
        try:
            hit = service.item(collection, item)
        except ImgFinderError:
            return
        state.like = {"item_id": item, "name": service.display_name(collection, hit.path)}


def remember(collection: str, model: str, threshold: float) -> None:
    """Write the search on the page into the URL (only when it changed: no history churn)."""
    state = st.session_state
    wanted = {
        "lang": state.get("lang", "en"),
        "c": Path(collection).name,
        "model": model,
        "mode": state.get("mode", "Text"),
        "show": state.get("show", "Everything"),
        "k": str(state.get("k", "")),
        "scale": state.get("scale", CUTOFF_SCALES[0]),
        "min": f"{threshold:g}",
        **{name: state.get(key, "") for name, key in TEXTS.items()},
    }
    if (like := state.get("like")) is not None:
        wanted["like"] = str(like["item_id"])
    wanted["folder"] = state.get(FOLDER_KEY) or ""
    wanted["class"] = state.get(LABEL_KEY) or ""
    dates = tuple(state.get(DATES_KEY) or ())
    if dates:
        wanted["from"], wanted["to"] = dates[0].isoformat(), dates[-1].isoformat()
    wanted = {name: value for name, value in wanted.items() if value}
    if dict(st.query_params) != wanted:
        st.query_params.from_dict(wanted)


def browser_language() -> str:
    """Russian for a browser that prefers it, else English."""
    locale = st.context.locale or ""
    return "ru" if locale.lower().startswith("ru") else "en"


def _date(text: str | None) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


def _number(text: str | None, kind: type, low: float, high: float) -> Any:
    """`text` as an int or float within [low, high], else None."""
    try:
        value = kind(text) if text is not None else None
    except ValueError:
        return None
    if value is None or not math.isfinite(value) or not low <= value <= high:
        return None
    return value

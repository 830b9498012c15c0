"""The result cards of the page: images, videos with their moments, the enlarged preview.

Layout and wording only; every picture and file comes from the service.
"""

from __future__ import annotations

import time
from pathlib import Path

import streamlit as st

from imgfinder.errors import ImgFinderError
from imgfinder.service import Hit, Outcome, Query, Result, Selection, Service
from imgfinder.textfmt import display_path, format_ms
from imgfinder.textfmt import escape_markdown as md
from imgfinder.timefmt import format_timestamp
from imgfinder.ui.words import counted, t

COLUMNS = 4
RUNTIME_LABELS = {
    "auto": "Automatic",
    "onnx": "ONNX fp32",
    "onnx-int8": "ONNX int8",
    "torch": "PyTorch",
}
#: moments of one video offered as thumbnails with a play button, best first
MOMENTS_SHOWN = 4
#: the side the query's own picture is decoded to for showing it
QUERY_SIDE = 240
#: seconds a map may take on the page; a slow model gets a coarser map from fewer views
MAP_BUDGET = 5.0
METHOD_LABELS = {"masks": "Hiding parts", "gradcam": "Gradients (PyTorch)"}
WHY_HELP = (
    "A heat map of the regions that make this image match: the model is shown the image "
    "hundreds of times with parts hidden, and the parts whose absence lowers the score "
    "light up."
)


def relevance_map(service: Service, selection: Selection, query: Query, item_id: int) -> None:
    methods = service.explain_methods()
    method = st.radio(
        t("Map by"),
        methods,
        format_func=lambda name: t(METHOD_LABELS[name]),
        horizontal=True,
        key=f"why-method-{item_id}",
        disabled=len(methods) == 1,
    )
    with st.spinner(t("Drawing the map…")):
        try:
            found = service.explain(selection, query, item_id, method, budget=MAP_BUDGET)
        except ImgFinderError as exc:
            st.error(md(str(exc)))
            return
    st.image(found.overlay(), width="stretch", caption=t("Relevance map"))
    views = t(" ({views} views)", views=found.views) if found.views else ""
    method = t(METHOD_LABELS[found.method]).lower()
    time_taken = format_ms(found.seconds)
    st.caption(
        t(
            "Brightest where the match is strongest · {method}{views} · {time}",
            method=method,
            views=views,
            time=time_taken,
        )
    )


def query_picture(
    service: Service, collection: str, upload: bytes | None, like: int | None
) -> None:
    """The picture a search is by, small above its results: the "more like" item, else the
    upload (decoded by the service, so a HEIC shows too)."""
    try:
        if like is not None:
            thumb = service.thumbnail(collection, service.item(collection, like))
            if thumb is not None:
                st.image(str(thumb), width=120, caption=t("More like this picture"))
        elif upload:
            image = service.check_upload(upload, QUERY_SIDE).image
            st.image(image, width=120, caption=t("Your picture"))
    except ImgFinderError:
        return  # the search itself says what is wrong with it


def forget_like() -> None:
    st.session_state.pop("like", None)


def more_like(item_id: int, name: str) -> None:
    st.session_state.like = {"item_id": item_id, "name": name}


def results_grid(
    service: Service, selection: Selection, query: Query, outcome: Outcome, best_first: bool
) -> None:
    started = time.perf_counter()
    collection = selection.collection
    timings = st.empty()
    if outcome.parity:
        label = t(RUNTIME_LABELS.get(outcome.runtime, outcome.runtime))
        st.caption(t("{label} {parity} (measured at export)", label=label, parity=outcome.parity))
    results = outcome.results if best_first else outcome.results[::-1]
    thumbs = service.thumbnails(collection, [result.hit for result in results])
    for start in range(0, len(results), COLUMNS):
        row = results[start : start + COLUMNS]
        for column, result in zip(st.columns(COLUMNS), row, strict=False):
            with column, st.container(border=True):
                thumb = thumbs.get(result.hit.item_id)
                if result.hit.kind == "video":
                    video_card(service, collection, result, thumb)
                else:
                    image_card(service, selection, query, result, thumb)
    encode = t("cached") if outcome.cached_query else format_ms(outcome.encode_s)
    timings.caption(
        t(
            "{results} · encode {encode} · search {search} · render {render}",
            results=counted(len(results), "result", "results"),
            encode=encode,
            search=format_ms(outcome.search_s),
            render=format_ms(time.perf_counter() - started),
        )
    )


def image_card(
    service: Service, selection: Selection, query: Query, result: Result, thumb: Path | None
) -> None:
    hit = result.hit
    if thumb is not None:
        st.image(str(thumb), width="stretch")
    else:
        st.text(t("(no preview)"))
    st.text(result.name)
    st.caption(score_line(hit))
    left, right = st.columns(2)
    if left.button(t("Enlarge"), key=f"enlarge-{hit.item_id}", icon=":material/zoom_in:"):
        enlarge(service, selection, query, result)
    why = t("Why?")
    if right.button(why, key=f"why-{hit.item_id}", icon=":material/insights:", help=t(WHY_HELP)):
        enlarge(service, selection, query, result, why=True)
    more_like_button(hit.item_id, hit.item_id, result.name)


def video_card(service: Service, collection: str, result: Result, thumb: Path | None) -> None:
    hit, moments = result.hit, result.best_moments(MOMENTS_SHOWN)
    best = max(result.moments, key=lambda moment: moment.score)
    state = f"video::{hit.path}"
    if (start := st.session_state.get(state)) is None:
        if thumb is not None:
            st.image(str(thumb), width="stretch")
        play_button(
            t("Play from {time}", time=format_timestamp(best.t_start)),
            f"play-{hit.item_id}",
            state,
            best.t_start,
        )
    else:
        try:
            st.video(service.read_original(collection, hit.path), start_time=start)
        except ImgFinderError as exc:
            st.error(md(str(exc)))
    st.text(result.name)
    st.caption(
        f"{format_timestamp(best.t_start)}–{format_timestamp(best.t_end)} · {score_line(hit)}"
    )
    if len(result.moments) > 1:
        more = t(", the best {count} below", count=len(moments))
        more = more if len(result.moments) > len(moments) else ""
        st.caption(t("{count} matching moments{more}", count=len(result.moments), more=more))
    for row in range(0, len(moments), 2):  # two a row: a timestamp fits its button
        for column, moment in zip(st.columns(2), moments[row : row + 2], strict=False):
            with column:
                if (frame := service.thumbnail(collection, hit, moment.t_best)) is not None:
                    st.image(str(frame), width="stretch")
                label = format_timestamp(moment.t_start)
                play_button(label, f"moment-{moment.item_id}", state, moment.t_start, moment.score)
    more_like_button(hit.item_id, best.item_id, result.name)


def score_line(hit: Hit) -> str:
    confidence = hit.confidence
    sure = (
        t(" · confidence {confidence:.2f}", confidence=confidence) if confidence is not None else ""
    )
    return t("score {score:.3f}", score=hit.score) + sure


def play_button(label: str, key: str, state: str, start: float, score: float | None = None) -> None:
    tip = t("score {score:.3f}", score=score) if score is not None else None
    st.button(label, key=key, on_click=play, args=(state, start), help=tip, width="stretch")


def more_like_button(card: int, item_id: int, name: str) -> None:
    st.button(
        t("More like this"),
        key=f"like-{card}",
        on_click=more_like,
        args=(item_id, name),
        icon=":material/auto_awesome:",
        width="stretch",
    )


def play(state: str, start: float) -> None:
    st.session_state[state] = start


def forget_players_on_new_query(query: Query) -> None:
    """A video started for one query must not keep showing that moment under the next."""
    asked = (*query.cache_key(), query.item_id)
    if st.session_state.get("players_query") != asked:
        for key in [key for key in st.session_state if str(key).startswith("video::")]:
            del st.session_state[key]
        st.session_state.players_query = asked


def enlarge(
    service: Service, selection: Selection, query: Query, result: Result, why: bool = False
) -> None:
    """The preview dialog (made per call, so that its title is in the session's language)."""
    st.dialog(t("Preview"), width="large")(dialog_body)(service, selection, query, result, why)


def dialog_body(
    service: Service, selection: Selection, query: Query, result: Result, why: bool
) -> None:
    hit, collection = result.hit, selection.collection
    if st.toggle(t("Why it matched"), why, key=f"why-{hit.item_id}-{why}", help=t(WHY_HELP)):
        relevance_map(service, selection, query, hit.item_id)
    elif (larger := service.preview(collection, hit.path)) is not None:
        st.image(str(larger), width="stretch")  # a small picture too fills the dialog
    st.text(display_path(hit.path))
    st.caption(score_line(hit))
    left, right = st.columns(2)
    left.download_button(
        t("Download original"),
        data=lambda: service.read_original(collection, hit.path),
        file_name=display_path(Path(hit.path).name),
        icon=":material/download:",
        key=f"original-{hit.item_id}",
        on_click="ignore",  # a rerun would close the dialog while the download starts
    )
    if right.button(t("More like this"), key=f"dialog-like-{hit.item_id}"):
        more_like(hit.item_id, result.name)
        st.rerun()

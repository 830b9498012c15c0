"""The results of a search: the grid of thumbnails, pages of more results, the viewer a
result opens in, and the picture a search is by.

Layout and wording only; every picture and file comes from the service.
"""

from __future__ import annotations

import time

import streamlit as st

from imgfinder.errors import ImgFinderError
from imgfinder.service import Outcome, Query, Selection, Service
from imgfinder.textfmt import format_ms
from imgfinder.ui.grid import result_grid
from imgfinder.ui.viewer import close_viewer, open_viewer, show_viewer
from imgfinder.ui.words import counted, t

RUNTIME_LABELS = {
    "auto": "Automatic",
    "onnx": "ONNX fp32",
    "onnx-int8": "ONNX int8",
    "torch": "PyTorch",
}
#: the side the query's own picture is decoded to for showing it
QUERY_SIDE = 240
#: the most results "Show more" pages to
MAX_RESULTS = 1000


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
    pictures = service.pictures(collection, [result.hit for result in results])

    def like(index: int) -> None:
        more_like(results[index].best_item, results[index].name)

    result_grid(results, pictures, key="grid", on_open=open_viewer, on_like=like)
    show_viewer(service, selection, query, results)
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


def more_results(outcome: Outcome, asked: int, page: int) -> None:
    """A button for the next page while the search filled every place it was asked for
    (fewer means the cutoff ended the results)."""
    if len(outcome.hits) >= asked and asked < MAX_RESULTS:
        st.button(
            t("Show {count} more", count=min(page, MAX_RESULTS - asked)),
            key="more_results",
            on_click=next_page,
            icon=":material/expand_more:",
        )


def asked_for(page: int) -> int:
    """How many results the page asks for: `page` per page shown so far."""
    return min(page * st.session_state.get("pages", 1), MAX_RESULTS)


def next_page() -> None:
    st.session_state.pages = st.session_state.get("pages", 1) + 1


def forget_on_new_query(query: Query, page: int) -> None:
    """A new query, or a new page size, starts at the first page with the viewer closed."""
    asked = (*query.cache_key(), query.item_id, page)
    if st.session_state.get("results_query") != asked:
        st.session_state.pop("pages", None)
        close_viewer()
        st.session_state.results_query = asked

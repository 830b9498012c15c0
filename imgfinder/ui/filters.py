"""The page's folder and date filters: drawn from what the collection holds, read back as a
library `Filter` (the kind comes from the page's "Show" choice)."""

from __future__ import annotations

import streamlit as st

from imgfinder.errors import ImgFinderError
from imgfinder.service import Filter, Selection, Service
from imgfinder.ui.words import t

#: widget keys, also read by the URL state
LABEL_KEY = "only_label"
FOLDER_KEY = "only_folder"
DATES_KEY = "only_dates"
#: a date range from the URL, for the date widget's first value (a range widget must be given
#: one, and giving one while its key is set through the session state makes Streamlit warn)
URL_DATES_KEY = "url_dates"


def filter_panel(service: Service, selection: Selection, kind: str | None) -> Filter:
    """The collection's classes as facets with their counts, and a folder choice and a date
    range folded away until wanted; the filter they set."""
    collection = selection.collection
    label = label_facets(service, selection)
    state = st.session_state
    folders = service.folders(collection)
    span = service.taken_span(collection)
    if state.get(FOLDER_KEY) not in (None, "", *folders):
        del state[FOLDER_KEY]  # a folder of another collection, or one since removed
    active = any(state.get(key) for key in (FOLDER_KEY, DATES_KEY, URL_DATES_KEY))
    with st.expander(t("Limit to a folder or dates"), expanded=active):
        left, right = st.columns(2)
        folder = left.selectbox(
            t("Folder"),
            ("", *folders),
            format_func=lambda path: service.folder_label(collection, path) if path else t("All"),
            key=FOLDER_KEY,
        )
        dates = right.date_input(
            t("Taken between"),
            value=state.pop(URL_DATES_KEY, ()),
            min_value=span[0] if span else None,
            max_value=span[1] if span else None,
            format="YYYY-MM-DD",
            help=t("The photo's EXIF date, else when its file was last changed."),
            key=DATES_KEY,
        )
        if active:
            st.button(
                t("Clear the filters"), key="clear", on_click=clear_filters, icon=":material/close:"
            )
    chosen = list(dates or ())  # a range being picked has its first day only
    since = chosen[0] if chosen else None
    until = chosen[-1] if chosen else None
    return service.within(collection, kind, folder or None, since, until, label)


def label_facets(service: Service, selection: Selection) -> str | None:
    """One of the collection's labels, picked from pills saying how many items each has."""
    try:
        counts = service.class_counts(selection)
    except ImgFinderError:  # the model cannot load here: the page says why, further down
        counts = {}
    if st.session_state.get(LABEL_KEY) not in (None, *counts):
        del st.session_state[LABEL_KEY]  # a label of another collection, or one since changed
    if not counts:
        return None
    return st.pills(
        t("Class"),
        list(counts),
        format_func=lambda name: f"{name} · {counts[name]}",
        key=LABEL_KEY,
        help=t("Each item has the label it is closest to (imgfinder labels set ...)."),
    )


def clear_filters() -> None:
    """Back to everything. The folder is set, not forgotten: a forgotten select box comes back
    with the browser's last choice at the next click. The dates are forgotten: a range widget
    must be given a first value, which Streamlit refuses beside one set here."""
    st.session_state[FOLDER_KEY] = ""
    st.session_state.pop(DATES_KEY, None)
    st.session_state.pop(LABEL_KEY, None)

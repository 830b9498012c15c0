"""The Index tab's folders: every indexed folder with a button that re-indexes it, the switch
that watches them all for new, changed and deleted files, and the classes the collection's
items are sorted into. Layout and wording only."""

from __future__ import annotations

import time

import streamlit as st

from imgfinder.errors import ImgFinderError
from imgfinder.service import Selection, Service
from imgfinder.textfmt import escape_markdown as md
from imgfinder.ui.words import counted, duration, t

#: seconds between redraws of the watch's status while the Index tab is open
STATUS_EVERY = 2.0


def indexed_folders(service: Service, selection: Selection, running: bool) -> None:
    roots = service.roots(selection.collection)
    if not roots:
        return
    st.subheader(t("Indexed folders"), divider=True)
    estimate = service.estimate(selection)
    if estimate.files:
        words = {"left": estimate.files, "total": estimate.total, "model": selection.model}
        if estimate.seconds is None:
            st.info(t("{left} of {total} files are not indexed with {model} yet.", **words))
        else:
            st.info(
                t(
                    "{left} of {total} files are not indexed with {model} yet: re-indexing "
                    "takes {time} here.",
                    time=duration(estimate.seconds),
                    **words,
                )
            )
    for number, root in enumerate(roots):
        left, right = st.columns([5, 1], vertical_alignment="center")
        left.text(root)
        right.button(
            t("Re-index"),
            key=f"reindex-{number}",
            on_click=reindex,
            args=(service, selection, root),
            disabled=running,
            icon=":material/refresh:",
            help=t("Embeds only what is new or changed and forgets deleted files."),
        )
    st.toggle(
        t("Watch these folders: index new and changed files by themselves"),
        value=service.watching(selection) is not None,
        key=f"watch::{selection.collection}",
        on_change=set_watching,
        args=(service, selection),
    )
    watch_status(service, selection)
    class_editor(service, selection)


@st.fragment(run_every=STATUS_EVERY)
def watch_status(service: Service, selection: Selection) -> None:
    status = service.watching(selection)
    if status is None:
        return
    parts = [t("Watching {folders}", folders=counted(len(status.folders), "folder", "folders"))]
    if status.last_run is not None:
        when = time.strftime("%H:%M:%S", time.localtime(status.last_run))
        parts.append(t("last re-indexed at {time}", time=when))
    if status.pending:
        parts.append(t("{count} changes waiting", count=status.pending))
    st.caption(" · ".join(parts))
    for folder, reason in status.skipped:
        st.warning(md(t("Not watching {folder}: {reason}", folder=folder, reason=reason)))
    if status.last_error:
        st.error(md(t("The last re-index failed: {error}", error=status.last_error)))


def reindex(service: Service, selection: Selection, root: str) -> None:
    try:
        service.start_indexing(selection, root)
    except ImgFinderError as exc:
        st.session_state.index_error = str(exc)


def set_watching(service: Service, selection: Selection) -> None:
    on = st.session_state[f"watch::{selection.collection}"]
    try:
        service.set_watching(selection, on)
    except ImgFinderError as exc:
        st.session_state.index_error = str(exc)


def class_editor(service: Service, selection: Selection) -> None:
    """The labels the Search tab offers as classes to limit the results to."""
    labels = service.labels(selection.collection)
    key = f"classes::{selection.collection}"
    with st.expander(t("Classes to sort the items into")):
        st.text_input(
            t("Labels, comma-separated (at least two)"),
            value=", ".join(labels.names) if labels else "",
            key=key,
            placeholder=t("beach, mountains, city, people, food"),
            help=t(
                "Every item gets the label the model finds nearest; the Search tab can then "
                "show one class only. Leave empty for none."
            ),
        )
        st.button(
            t("Save the classes"), key="save_classes", on_click=save_classes, args=(service, key)
        )


def save_classes(service: Service, key: str) -> None:
    collection = key.split("::", 1)[1]
    names = [name.strip() for name in st.session_state[key].split(",") if name.strip()]
    try:
        service.set_labels(collection, names)
    except ImgFinderError as exc:
        st.session_state.index_error = str(exc)

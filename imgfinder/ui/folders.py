"""The Index tab's folders: every indexed folder with a button that re-indexes it, and the
switch that watches them all for new, changed and deleted files. Layout and wording only."""

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
    roots = service.info(selection.collection)["roots"]
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

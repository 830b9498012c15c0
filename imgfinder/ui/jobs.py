"""Background work shown on the page: index runs and model downloads, with live progress.

Each progress bar is a fragment re-drawn twice a second, so the rest of the page stays usable.
"""

from __future__ import annotations

import streamlit as st

from imgfinder.errors import ImgFinderError
from imgfinder.jobs import JobStatus
from imgfinder.service import Selection, Service
from imgfinder.textfmt import escape_markdown as md
from imgfinder.textfmt import format_seconds

PHASES = {"scan": "Scanning", "hash": "Reading", "embed": "Embedding", "video": "Videos"}


def index_tab(service: Service, selection: Selection) -> None:
    st.text_input(
        "Folder to add (on this computer)",
        key="folder",
        placeholder="/home/me/Pictures",
        help="Only new and changed files are embedded; search keeps working meanwhile.",
    )
    status = service.job_status(selection.collection)
    running = status is not None and status.running
    if st.button(
        "Index folder", type="primary", disabled=running, icon=":material/add_photo_alternate:"
    ):
        try:
            service.start_indexing(selection, st.session_state.folder)
        except ImgFinderError as exc:
            st.error(md(str(exc)))
        else:
            st.rerun()
    if running:
        live_progress(service, selection.collection)
    elif status is not None:
        job_summary(service, status)


@st.fragment(run_every=0.5)
def live_progress(service: Service, collection: str) -> None:
    """Re-drawn twice a second while a run lasts; the page around it stays usable."""
    status = service.job_status(collection)
    if status is None or not status.running:
        st.rerun()
        return
    phase = PHASES.get(status.phase, status.phase)
    rate = f" · {status.rate:.1f}/s" if status.rate else ""
    eta = format_seconds(status.eta)
    st.progress(status.fraction, text=f"{phase} {status.done}/{status.total}{rate} · ETA {eta}")
    st.button(
        "Cancel", on_click=service.cancel_indexing, args=(collection,), icon=":material/stop:"
    )


def job_summary(service: Service, status: JobStatus) -> None:
    if status.state == "failed":
        st.error(md(f"Indexing {status.folder} failed: {status.error}"))
    else:
        counts = status.summary or {}
        headline = (
            f"Indexed {counts.get('indexed', 0)} new files from {status.folder}; "
            f"{counts.get('unchanged', 0)} unchanged, {counts.get('removed', 0)} removed, "
            f"{counts.get('skipped', 0)} skipped, in {format_seconds(status.elapsed)}."
        )
        if status.state == "cancelled":
            st.warning(md("Cancelled. " + headline + " Index again to resume."))
        else:
            st.success(md(headline))
    if status.skipped:
        st.caption("Skipped files")
        rows = [{"file": item.path, "reason": item.reason} for item in status.skipped]
        st.dataframe(rows, hide_index=True, width="stretch")
    st.button("Dismiss", on_click=service.dismiss_job, args=(status.collection,))


def model_download(service: Service, key: str, missing: str) -> None:
    """A model whose files are not here: what a download fetches, and a button that does it."""
    st.warning(
        md(f"Model {key} is not available here: {missing}"), icon=":material/cloud_download:"
    )
    status = service.pull_status(key)
    if status is not None and status.running:
        pull_progress(service, key)
        return
    if status is not None and status.state == "failed":
        st.error(md(f"Downloading {key} failed: {status.error}"))
    info = service.model_info(key)
    size = f" (about {info.size_mb} MB)" if info is not None else ""
    st.button(f"Download {key}{size}", on_click=service.start_pull, args=(key,), type="primary")


@st.fragment(run_every=0.5)
def pull_progress(service: Service, key: str) -> None:
    status = service.pull_status(key)
    if status is None or not status.running:
        st.rerun()
        return
    fraction = status.done / status.total if status.total else 0.0
    st.progress(fraction, text=md(f"Downloading {status.current} · {status.done}/{status.total}"))


# -- search ---------------------------------------------------------------------------------

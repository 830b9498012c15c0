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
from imgfinder.ui.folders import indexed_folders
from imgfinder.ui.words import counted, duration, t

PHASES = {"scan": "Scanning", "embed": "Embedding", "video": "Videos"}


def index_tab(service: Service, selection: Selection) -> None:
    st.text_input(
        t("Folder to add (on this computer)"),
        key="folder",
        placeholder=t("/home/me/Pictures"),
        help=t("Only new and changed files are embedded; search keeps working meanwhile."),
    )
    status = service.job_status(selection.collection)
    running = status is not None and status.running
    if st.button(
        t("Index folder"), type="primary", disabled=running, icon=":material/add_photo_alternate:"
    ):
        try:
            service.start_indexing(selection, st.session_state.folder)
        except ImgFinderError as exc:
            st.error(md(str(exc)))
        else:
            st.rerun()
    if error := st.session_state.pop("index_error", None):
        st.error(md(error))
    if running:
        live_progress(service, selection.collection)
    elif status is not None:
        job_summary(service, status)
    indexed_folders(service, selection, running)


@st.fragment(run_every=0.5)
def live_progress(service: Service, collection: str) -> None:
    """Re-drawn twice a second while a run lasts; the page around it stays usable."""
    status = service.job_status(collection)
    if status is None or not status.running:
        st.rerun()
        return
    phase = t(PHASES.get(status.phase, status.phase))
    rate = f" · {status.rate:.1f}/s" if status.rate else ""
    line = t(
        "{phase} {done}/{total}{rate} · ETA {eta}",
        phase=phase,
        done=status.done,
        total=status.total,
        rate=rate,
        eta=format_seconds(status.eta),
    )
    st.progress(status.fraction, text=line)
    st.button(
        t("Cancel"), on_click=service.cancel_indexing, args=(collection,), icon=":material/stop:"
    )


#: where an index run's time went, under its summary
TIMINGS = (
    "Per image: decoding {decode_ms_per_image:g} ms of CPU, embedding {embed_ms_per_image:g} "
    "ms, storing {store_ms_per_image:g} ms · {items_per_s:g} files/s · CPU {cpu_seconds:g} s "
    "· peak memory {peak_rss_mb:g} MB"
)
TIMING_KEYS = (
    "decode_ms_per_image",
    "embed_ms_per_image",
    "store_ms_per_image",
    "items_per_s",
    "cpu_seconds",
    "peak_rss_mb",
)


def job_summary(service: Service, status: JobStatus) -> None:
    if status.state == "failed":
        st.error(
            md(t("Indexing {folder} failed: {error}", folder=status.folder, error=status.error))
        )
    else:
        counts = status.summary or {}
        headline = t(
            "Indexed {indexed} new files from {folder}; {unchanged} unchanged, {removed} removed, "
            "{skipped} skipped, in {elapsed}.",
            indexed=counts.get("indexed", 0),
            unchanged=counts.get("unchanged", 0),
            removed=counts.get("removed", 0),
            skipped=counts.get("skipped", 0),
            folder=status.folder,
            elapsed=format_seconds(status.elapsed),
        )
        if status.state == "cancelled":
            st.warning(md(t("Cancelled. {headline} Index again to resume.", headline=headline)))
        else:
            st.success(md(headline))
        if counts.get("decode_ms_per_image"):
            st.caption(t(TIMINGS, **{key: counts.get(key, 0) for key in TIMING_KEYS}))
    if status.skipped:
        st.caption(t("Skipped files"))
        rows = [{t("file"): item.path, t("reason"): item.reason} for item in status.skipped]
        st.dataframe(rows, hide_index=True, width="stretch")
    st.button(t("Dismiss"), on_click=service.dismiss_job, args=(status.collection,))


def model_download(service: Service, selection: Selection, missing: str) -> None:
    """A model whose files are not here: what a download fetches, how fast the model runs
    here and how long indexing this collection with it would take, and a button that
    downloads it."""
    key = selection.model
    st.warning(
        md(t("Model {key} is not available here: {missing}", key=key, missing=missing)),
        icon=":material/cloud_download:",
    )
    model_speed(service, selection)
    status = service.pull_status(key)
    if status is not None and status.running:
        pull_progress(service, key)
        return
    if status is not None and status.state == "failed":
        st.error(md(t("Downloading {key} failed: {error}", key=key, error=status.error)))
    info = service.model_info(key)
    size = t(" (about {mb} MB)", mb=info.size_mb) if info is not None else ""
    label = t("Download {key}{size}", key=key, size=size)
    st.button(label, on_click=service.start_pull, args=(key,), type="primary")


def model_speed(service: Service, selection: Selection) -> None:
    info = service.model_info(selection.model)
    if info is None:
        return
    speeds = dict(info.images_per_s)
    if not speeds:
        st.caption(t("Its speed has not been measured on this machine."))
        return
    line = t(
        "Measured on this machine by `make bench` (2 CPU cores): {fp32:g} images/s in fp32, "
        "{int8:g} in int8.",
        fp32=speeds.get("fp32", 0),
        int8=speeds.get("int8", 0),
    )
    estimate = service.estimate(selection)
    if estimate.total and estimate.seconds is not None:
        files = counted(estimate.files, "file", "files")
        line += " " + t(
            "Indexing this collection's {files} with it takes {time} here.",
            files=files,
            time=duration(estimate.seconds),
        )
    st.caption(line)


@st.fragment(run_every=0.5)
def pull_progress(service: Service, key: str) -> None:
    status = service.pull_status(key)
    if status is None or not status.running:
        st.rerun()
        return
    fraction = status.done / status.total if status.total else 0.0
    line = t(
        "Downloading {file} · {done}/{total}",
        file=status.current,
        done=status.done,
        total=status.total,
    )
    st.progress(fraction, text=md(line))

"""imgfinder in the browser: `make run`, then open http://127.0.0.1:8501.

Layout and widgets only. Models, indexes, thumbnails, upload checks and file access live in
`imgfinder.service`; this script asks it for data and draws it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import streamlit as st

from imgfinder.embedders.registry import ModelInfo
from imgfinder.errors import ImgFinderError
from imgfinder.media.uploads import MAX_UPLOAD_MB
from imgfinder.service import (
    JobStatus,
    Outcome,
    Query,
    Result,
    Selection,
    Service,
    Settings,
)
from imgfinder.textfmt import (
    display_path,
    escape_markdown,
    format_ms,
    format_seconds,
    plural,
)
from imgfinder.timefmt import format_timestamp

COLUMNS = 4
RUNTIME_LABELS = {
    "auto": "Automatic",
    "onnx": "ONNX fp32",
    "onnx-int8": "ONNX int8",
    "torch": "PyTorch",
}
PHASES = {"scan": "Scanning", "hash": "Reading", "embed": "Embedding", "video": "Videos"}
SORTS = ("Best first", "Worst first")
SHOWS = {"Everything": None, "Images": "image", "Videos": "video"}
#: moments of one video offered as thumbnails with a play button, best first
MOMENTS_SHOWN = 4

st.set_page_config(page_title="imgfinder", page_icon=":material/image_search:", layout="wide")


@st.cache_resource(show_spinner="Starting imgfinder…")
def get_service(settings: Settings) -> Service:
    """One service per process: models and indexes load once, whatever the sessions do."""
    return Service(settings)


def text(message: str) -> str:
    """Markdown-safe: message bodies are markdown, file names must show as typed."""
    return escape_markdown(message)


# -- sidebar --------------------------------------------------------------------------------


def sidebar(service: Service) -> tuple[Selection | None, int, float, str]:
    """Collection, model, runtime, indexer and result controls."""
    with st.sidebar:
        st.title(":material/image_search: imgfinder")
        collections = [str(path) for path in service.collections()]
        if not collections:
            st.info("No collection yet: create one below, then add a folder to it.")
        collection = st.selectbox(
            "Collection",
            collections,
            format_func=lambda path: Path(path).name,
            key="collection",
            on_change=forget_like,  # item ids belong to one collection
        )
        with st.expander("New collection"):
            st.text_input("Name", key="new_collection", placeholder="holidays")
            st.button("Create", on_click=create_collection, args=(service,))

        model, runtime = model_controls(service, collection)
        indexer, params = indexer_controls(service)
        st.divider()
        k = st.slider("Results (top-k)", 1, 200, 24, key="k")
        info = service.model_info(model) if model else None
        threshold = st.slider(
            "Minimum similarity (cosine)",
            0.0,
            1.0,
            service.default_threshold(info),
            0.01,
            key=f"threshold::{model}",
            help="Results scoring below this are hidden. Each model starts at its own default.",
        )
        order = st.radio("Sort by score", SORTS, horizontal=True, key="sort")
    if collection is None or model is None:
        return None, k, threshold, order
    return Selection(collection, model, runtime, indexer, params), k, threshold, order


def create_collection(service: Service) -> None:
    try:
        path = service.create_collection(st.session_state.new_collection.strip())
    except ImgFinderError as exc:
        st.session_state.sidebar_error = str(exc)
    else:
        st.session_state.collection = str(path)
        st.session_state.new_collection = ""


def model_controls(service: Service, collection: str | None) -> tuple[str | None, str]:
    models = {info.key: info for info in service.models()}
    if error := st.session_state.pop("sidebar_error", None):
        st.error(text(error))
    if collection is None or not models:
        return None, "auto"
    default = service.default_model(collection)
    keys = list(models)
    model = st.selectbox(
        "Model",
        keys,
        index=keys.index(default) if default in keys else 0,
        format_func=lambda key: model_label(service, models[key]),
        key=f"model::{collection}",
    )
    info = models[model]
    st.caption(text(f"{info.description} · {', '.join(info.languages)}"))
    runtimes = service.runtimes()
    runtime = st.selectbox(
        "Runtime",
        runtimes,
        format_func=lambda name: RUNTIME_LABELS.get(name, name),
        key="runtime",
        help="Automatic picks ONNX when the model has it, else PyTorch.",
    )
    return model, runtime


def model_label(service: Service, info: ModelInfo) -> str:
    return info.key if service.usable(info) else f"{info.key} — not downloaded"


def indexer_controls(service: Service) -> tuple[str, tuple[tuple[str, Any], ...]]:
    indexers = service.indexers()
    name = st.selectbox(
        "Index",
        list(indexers),
        format_func=lambda key: indexers[key][0].split(":")[0],
        key="indexer",
    )
    description, defaults = indexers[name]
    with st.expander("Index parameters"):
        st.caption(text(description))
        if not defaults:
            st.caption("This index has no parameters.")
        params = {key: param_input(name, key, value) for key, value in defaults.items()}
    return name, tuple(sorted((k, v) for k, v in params.items() if v != defaults[k]))


def param_input(indexer: str, name: str, default: Any) -> Any:
    key = f"param::{indexer}::{name}"
    if isinstance(default, bool):
        return st.checkbox(name, default, key=key)
    if isinstance(default, int):
        return int(st.number_input(name, value=default, step=1, key=key))
    if isinstance(default, float):
        return float(st.number_input(name, value=default, key=key))
    value = st.text_input(name, "" if default is None else str(default), key=key).strip()
    if default is None:
        return value or None  # an empty box leaves an optional parameter unset
    return value


# -- search ---------------------------------------------------------------------------------


def search_tab(
    service: Service, selection: Selection, k: int, threshold: float, order: str
) -> None:
    like = st.session_state.get("like")
    left, right = st.columns(2)
    mode = left.radio("Search by", ("Text", "Image"), horizontal=True, key="mode")
    show = right.radio("Show", tuple(SHOWS), horizontal=True, key="show")
    if mode == "Text":
        query_text = st.text_input(
            "Describe what you are looking for, in English or Russian",
            key="text_query",
            placeholder="a red circle · красный круг",
            on_change=forget_like,
        )
        query = Query.for_text(query_text) if query_text.strip() else None
    else:
        upload = st.file_uploader(
            f"Find images like this one (JPEG, PNG or WebP, up to {MAX_UPLOAD_MB} MB)",
            key="upload",
            max_upload_size=MAX_UPLOAD_MB,
            on_change=forget_like,
        )
        query = Query.for_image(upload.getvalue()) if upload is not None else None
    if like is not None:
        st.info(text(f"More like {like['name']}"), icon=":material/auto_awesome:")
        st.button("Back to my query", on_click=forget_like)
        query = Query.like(like["item_id"])
    if query is None:
        welcome(service, selection, mode)
        return
    forget_players_on_new_query(query)
    outcome = service.search(selection, query, k, threshold, SHOWS[show])
    if outcome.error:
        st.error(text(outcome.error))
    elif not outcome.results:
        st.info(text(why_empty(outcome, threshold, SHOWS[show])), icon=":material/filter_alt_off:")
    else:
        results_grid(service, selection, outcome, order)


def welcome(service: Service, selection: Selection, mode: str) -> None:
    counts = service.counts(selection.collection)
    if counts["items"] == 0:
        st.info(
            "This collection is empty — add a folder in the Index tab.",
            icon=":material/folder_open:",
        )
    else:
        hint = {
            "Text": "Type a description above, or pick an example",
            "Image": "Upload an example image above",
        }[mode]
        st.info(
            f"{hint}; on any result, “More like this” finds its neighbours.",
            icon=":material/lightbulb:",
        )
        if mode == "Image":
            return
        examples = service.examples(selection.collection)
        for column, example in zip(st.columns(len(examples)), examples, strict=True):
            column.button(
                example,
                key=f"example::{example}",
                icon=":material/search:",
                on_click=use_example,
                args=(example,),
                width="stretch",
            )


def use_example(example: str) -> None:
    st.session_state.mode = "Text"
    st.session_state.text_query = example
    forget_like()


def forget_like() -> None:
    st.session_state.pop("like", None)


def more_like(item_id: int, name: str) -> None:
    st.session_state.like = {"item_id": item_id, "name": name}


def why_empty(outcome: Outcome, threshold: float, kind: str | None) -> str:
    if outcome.empty == "nothing_indexed":
        return "This collection has nothing indexed yet — add a folder in the Index tab."
    if outcome.empty == "no_such_kind":
        return f"This collection has no {kind}s — show everything instead?"
    if outcome.empty == "below_threshold":
        best = outcome.best_score
        hint = f" The best match scores {best:.2f}." if best is not None else ""
        return f"Nothing above {threshold:.2f} — lower the threshold?{hint}"
    return "Nothing similar was found."


def results_grid(service: Service, selection: Selection, outcome: Outcome, order: str) -> None:
    started = time.perf_counter()
    timings = st.empty()
    if outcome.parity:
        label = RUNTIME_LABELS.get(outcome.runtime, outcome.runtime)
        st.caption(f"{label} {outcome.parity} (measured at export)")
    results = outcome.results if order == SORTS[0] else outcome.results[::-1]
    thumbs = service.thumbnails(selection.collection, [result.hit for result in results])
    for start in range(0, len(results), COLUMNS):
        row = results[start : start + COLUMNS]
        for column, result in zip(st.columns(COLUMNS), row, strict=False):
            with column, st.container(border=True):
                thumb = thumbs.get(result.hit.item_id)
                if result.hit.kind == "video":
                    video_card(service, selection.collection, result, thumb)
                else:
                    image_card(service, selection.collection, result, thumb)
    encode = "cached" if outcome.cached_query else format_ms(outcome.encode_s)
    timings.caption(
        f"{plural(len(results), 'result')} · encode {encode} · "
        f"search {format_ms(outcome.search_s)} · "
        f"render {format_ms(time.perf_counter() - started)}"
    )


def image_card(service: Service, collection: str, result: Result, thumb: Path | None) -> None:
    hit = result.hit
    if thumb is not None:
        st.image(str(thumb), width="stretch")
    else:
        st.text("(no preview)")
    st.text(result.name)
    st.caption(f"score {hit.score:.3f}")
    if st.button(
        "Enlarge", key=f"enlarge-{hit.item_id}", icon=":material/zoom_in:", width="stretch"
    ):
        enlarge(service, collection, result)
    more_like_button(hit.item_id, hit.item_id, result.name)


def video_card(service: Service, collection: str, result: Result, thumb: Path | None) -> None:
    hit = result.hit
    best = max(result.moments, key=lambda moment: moment.score)
    state = f"video::{hit.path}"
    start = st.session_state.get(state)
    if start is None:
        if thumb is not None:
            st.image(str(thumb), width="stretch")
        st.button(
            f"Play from {format_timestamp(best.t_start)}",
            key=f"play-{hit.item_id}",
            icon=":material/play_arrow:",
            on_click=play,
            args=(state, best.t_start),
            width="stretch",
        )
    else:
        try:
            st.video(service.read_original(collection, hit.path), start_time=start)
        except ImgFinderError as exc:
            st.error(text(str(exc)))
    st.text(result.name)
    st.caption(
        f"{format_timestamp(best.t_start)}–{format_timestamp(best.t_end)} · score {best.score:.3f}"
    )
    best_first = sorted(result.moments, key=lambda moment: -moment.score)
    shown = sorted(best_first[:MOMENTS_SHOWN], key=lambda moment: moment.t_start)
    if len(result.moments) > 1:
        more = f", the best {len(shown)} below" if len(result.moments) > len(shown) else ""
        st.caption(f"{len(result.moments)} matching moments{more}")
    for start_of_row in range(0, len(shown), 2):  # two a row: a timestamp fits its button
        for column, moment in zip(
            st.columns(2), shown[start_of_row : start_of_row + 2], strict=False
        ):
            with column:
                frame = service.thumbnail(collection, hit, moment.t_best)
                if frame is not None:
                    st.image(str(frame), width="stretch")
                st.button(
                    format_timestamp(moment.t_start),
                    key=f"moment-{moment.item_id}",
                    on_click=play,
                    args=(state, moment.t_start),
                    help=f"score {moment.score:.3f}",
                    width="stretch",
                )
    more_like_button(hit.item_id, best.item_id, result.name)


def more_like_button(card: int, item_id: int, name: str) -> None:
    st.button(
        "More like this",
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


@st.dialog("Preview", width="large")
def enlarge(service: Service, collection: str, result: Result) -> None:
    hit = result.hit
    preview = service.preview(collection, hit.path)
    if preview is not None:
        st.image(str(preview), width="stretch")  # a small picture too fills the dialog
    st.text(display_path(hit.path))
    st.caption(f"score {hit.score:.3f}")
    left, right = st.columns(2)
    left.download_button(
        "Download original",
        data=lambda: service.read_original(collection, hit.path),
        file_name=display_path(Path(hit.path).name),
        icon=":material/download:",
        key=f"original-{hit.item_id}",
        on_click="ignore",  # a rerun would close the dialog while the download starts
    )
    if right.button("More like this", key=f"dialog-like-{hit.item_id}"):
        more_like(hit.item_id, result.name)
        st.rerun()


# -- indexing -------------------------------------------------------------------------------


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
            st.error(text(str(exc)))
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
    st.progress(
        status.fraction,
        text=f"{phase} {status.done}/{status.total}{rate} · ETA {format_seconds(status.eta)}",
    )
    st.button(
        "Cancel", on_click=service.cancel_indexing, args=(collection,), icon=":material/stop:"
    )


def job_summary(service: Service, status: JobStatus) -> None:
    if status.state == "failed":
        st.error(text(f"Indexing {status.folder} failed: {status.error}"))
    else:
        summary = status.summary or {}
        headline = (
            f"Indexed {summary.get('indexed', 0)} new files from {status.folder}; "
            f"{summary.get('unchanged', 0)} unchanged, {summary.get('removed', 0)} removed, "
            f"{summary.get('skipped', 0)} skipped, in {format_seconds(status.elapsed)}."
        )
        if status.state == "cancelled":
            st.warning(text("Cancelled. " + headline + " Index again to resume."))
        else:
            st.success(text(headline))
    if status.skipped:
        st.caption("Skipped files")
        st.dataframe(
            [{"file": item.path, "reason": item.reason} for item in status.skipped],
            hide_index=True,
            width="stretch",
        )
    st.button("Dismiss", on_click=service.dismiss_job, args=(status.collection,))


# -- page -----------------------------------------------------------------------------------


def main() -> None:
    service = get_service(Settings.from_env())
    selection, k, threshold, order = sidebar(service)
    if selection is None:
        st.info("Create a collection in the sidebar to start.")
        return
    counts = service.counts(selection.collection)
    st.caption(
        text(
            f"{Path(selection.collection).name} · {plural(counts['images'], 'image')} · "
            f"{plural(counts['videos'], 'video')}"
        )
    )
    if missing := service.missing_message(selection.model):
        st.warning(
            text(f"Model {selection.model} is not available here: {missing}"),
            icon=":material/cloud_download:",
        )
        return
    search, index = st.tabs(["Search", "Index"])
    with search:
        search_tab(service, selection, k, threshold, order)
    with index:
        index_tab(service, selection)


main()

"""imgfinder in the browser: `make run`, then open http://127.0.0.1:8501.

Layout and page wording only. Models, downloads, indexes, thumbnails, upload checks and file
access live in `imgfinder.service`; this script asks it for data and draws it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from imgfinder.media.uploads import MAX_UPLOAD_MB
from imgfinder.service import NOT_WEIGHT, WITH_WEIGHT, Outcome, Query, Selection, Service, Settings
from imgfinder.textfmt import escape_markdown as md
from imgfinder.ui import ICON
from imgfinder.ui.collections import create_collection, manage_collection
from imgfinder.ui.filters import clear_filters, filter_panel
from imgfinder.ui.jobs import index_tab, model_download
from imgfinder.ui.results import (
    RUNTIME_LABELS,
    asked_for,
    forget_like,
    forget_on_new_query,
    more_results,
    query_picture,
    results_grid,
)
from imgfinder.ui.urlstate import first, remember, restore
from imgfinder.ui.words import LANGUAGES, counted, t

SORTS = ("Best first", "Worst first")
MODES = ("Text", "Image")
SCALES = {"confidence": "Confidence", "cosine": "Cosine"}
SHOWS = {"Everything": None, "Images": "image", "Videos": "video"}
#: the widgets whose options are shown in the page's language
TRANSLATED_CHOICES = ("mode", "show", "scale", "sort", "runtime", "only_folder")
DEMO_NOTE = (
    "The demo model knows only its synthetic world: colours, shapes, sizes, counts and "
    "backgrounds. For your own photos, pick or download a CLIP model."
)
#: the empty page's explanations (English keys of `t`)
EMPTY = {
    "nothing_indexed": "This collection has nothing indexed yet — add a folder in the Index tab.",
    "no_such_kind": "This collection has no {kinds} — show everything instead?",
    "filtered_out": "Nothing here is in that folder and those dates.",
    "below_threshold": "Nothing above {threshold:.2f} — lower the threshold?",
    "no_confident_match": "No confident matches: nothing here beats {threshold:.0%} of unrelated "
    "queries.",
}

st.set_page_config(page_title="imgfinder", page_icon=str(ICON), layout="wide")


@st.cache_resource(show_spinner="Starting imgfinder…")
def get_service(settings: Settings) -> Service:
    """One service per process: models and indexes load once, whatever the sessions do."""
    return Service(settings)


# -- sidebar --------------------------------------------------------------------------------


def sidebar(service: Service) -> tuple[Selection | None, int, float, str]:
    """Collection, model, runtime, indexer and result controls."""
    with st.sidebar:
        st.title(":material/image_search: imgfinder")
        st.radio(
            t("Language"),
            tuple(LANGUAGES),
            format_func=LANGUAGES.get,
            horizontal=True,
            key="lang",
            on_change=keep_choices,
        )
        collections = [str(path) for path in service.collections()]
        if not collections:
            st.info(t("No collection yet: create one below, then add a folder to it."))
        collection = st.selectbox(
            t("Collection"),
            collections,
            format_func=lambda path: Path(path).name,
            key="collection",
            on_change=forget_like,  # item ids belong to one collection
        )
        with st.expander(t("New collection")):
            st.text_input(t("Name"), key="new_collection", placeholder=t("holidays"))
            st.button(t("Create"), on_click=create_collection, args=(service,))
        if collection is not None:
            manage_collection(service, collection)
        if error := st.session_state.pop("sidebar_error", None):
            st.error(md(error))
        model = model_control(service, collection) if collection is not None else None
        runtime = st.selectbox(
            t("Runtime"),
            service.runtimes(),
            format_func=lambda name: t(RUNTIME_LABELS.get(name, name)),
            key="runtime",
            help=t("Automatic picks ONNX when the model has it, else PyTorch."),
        )
        indexer, params = indexer_controls(service)
        st.divider()
        k = st.slider(t("Results (top-k)"), 1, 200, first("k", 24), key="k")
        scale = st.radio(
            t("Cut off by"),
            tuple(SCALES),
            format_func=lambda name: t(SCALES[name]),
            horizontal=True,
            key="scale",
        )
        info = service.model_info(model) if model else None
        if scale == "confidence":
            threshold = st.slider(
                t("Minimum confidence"),
                0.0,
                1.0,
                first("confidence", service.default_threshold(info, scale)),
                0.01,
                key="confidence",
                help=t(
                    "The share of unrelated queries (everyday scenes, nonsense, patterns) whose "
                    "best match here a result must beat; 0 shows the closest anyway."
                ),
            )
        else:
            threshold = st.slider(
                t("Minimum similarity (cosine)"),
                0.0,
                1.0,
                first(f"threshold::{model}", service.default_threshold(info)),
                0.01,
                key=f"threshold::{model}",
                help=t(
                    "Results scoring below this are hidden. Each model starts at its own default."
                ),
            )
        order = st.radio(t("Sort by score"), SORTS, format_func=t, horizontal=True, key="sort")
    if collection is None or model is None:
        return None, k, threshold, order
    return Selection(collection, model, runtime, indexer, params), k, threshold, order


def keep_choices() -> None:
    """Re-set the choices whose labels change with the language: Streamlit would otherwise
    draw them with nothing selected in the new one, or hand back the old label itself."""
    for key in list(st.session_state):
        if key in TRANSLATED_CHOICES or str(key).startswith(("model::", "why-method-")):
            st.session_state[key] = st.session_state[key]


def model_control(service: Service, collection: str) -> str | None:
    models = {info.key: info for info in service.models()}
    if not models:
        return None
    default, keys = service.default_model(collection), list(models)
    model = st.selectbox(
        t("Model"),
        keys,
        index=keys.index(default) if first(f"model::{collection}", default) in keys else 0,
        format_func=lambda key: (
            key if service.usable(models[key]) else t("{key} — not downloaded", key=key)
        ),
        key=f"model::{collection}",
    )
    info = models[model]
    published = (
        [t("ImageNet zero-shot {top1} %", top1=info.imagenet_top1)] if info.imagenet_top1 else []
    )
    st.caption(md(" · ".join([info.description, ", ".join(info.languages), *published])))
    if info.family == "demo":
        st.info(t(DEMO_NOTE), icon=":material/info:")
    return model


def indexer_controls(service: Service) -> tuple[str, tuple[tuple[str, Any], ...]]:
    indexers = service.indexers()
    name = st.selectbox(
        t("Index"),
        list(indexers),
        format_func=lambda key: indexers[key][0].split(":")[0],
        key="indexer",
    )
    description, defaults = indexers[name]
    with st.expander(t("Index parameters")):
        st.caption(md(description))
        if not defaults:
            st.caption(t("This index has no parameters."))
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
    return (value or None) if default is None else value  # empty leaves an optional one unset


# -- models ---------------------------------------------------------------------------------


def search_tab(
    service: Service, selection: Selection, k: int, threshold: float, order: str
) -> None:
    left, right = st.columns(2)
    mode = left.radio(t("Search by"), MODES, format_func=t, horizontal=True, key="mode")
    show = right.radio(t("Show"), tuple(SHOWS), format_func=t, horizontal=True, key="show")
    upload = None
    if mode == "Text":
        typed = st.text_input(
            t("Describe what you are looking for, in English or Russian"),
            key="text_query",
            placeholder="a red circle · красный круг",
            on_change=forget_like,
        )
        query = Query.for_text(typed) if typed.strip() else None
    else:
        upload = st.file_uploader(
            t(
                "Find images like this one (JPEG, PNG, WebP, HEIC or AVIF, up to {mb} MB)",
                mb=MAX_UPLOAD_MB,
            ),
            key="upload",
            max_upload_size=MAX_UPLOAD_MB,
            on_change=forget_like,
        )
        augment = st.checkbox(
            t("Also mirrored and closer up (steadier, 4× the model's time)"), key="augment"
        )
        query = Query.for_image(upload.getvalue(), augment) if upload is not None else None
    if (like := st.session_state.get("like")) is not None:
        st.info(md(t("More like {name}", name=like["name"])), icon=":material/auto_awesome:")
        st.button(t("Back to my query"), on_click=forget_like)
        query = Query.like(like["item_id"])
    uploaded = upload.getvalue() if mode == "Image" and upload is not None else None
    query_picture(service, selection.collection, uploaded, like["item_id"] if like else None)
    query = refine(query, mode)
    only = filter_panel(service, selection, SHOWS[show])
    if query is None:
        welcome(service, selection, mode)
        return
    forget_on_new_query(query, k)
    scale = st.session_state.scale  # the sidebar's "Cut off by"
    asked = asked_for(k)
    outcome = service.search(selection, query, asked, threshold, only, scale=scale)
    if outcome.error:
        st.error(md(outcome.error))
    elif not outcome.results:
        st.info(md(why_empty(outcome, threshold, SHOWS[show])), icon=":material/filter_alt_off:")
        if outcome.empty == "no_confident_match":
            st.button(t("Show the closest anyway"), on_click=show_closest, icon=":material/search:")
        if outcome.empty == "filtered_out":
            st.button(
                t("Clear the filters"),
                key="clear_empty",
                on_click=clear_filters,
                icon=":material/close:",
            )
    else:
        results_grid(service, selection, query, outcome, order == SORTS[0])
        more_results(outcome, asked, k)


def refine(query: Query | None, mode: str) -> Query | None:
    """The query with the "but" and "not" terms of the Refine panel mixed in."""
    with st.expander(t("Refine: but …, not …")):
        left, right = st.columns(2)
        but = left.text_input(
            t("But (a text this image or result should also match)")
            if mode == "Image" or st.session_state.get("like")
            else t("And also"),
            key="but_text",
            placeholder=t("at night · ночью"),
        )
        but_weight = left.slider(
            t("How much it counts"), 0.0, 3.0, WITH_WEIGHT, 0.1, key="but_weight"
        )
        nots = right.text_input(
            t("Not (comma-separated)"), key="not_text", placeholder=t("circle, blue · круг")
        )
        not_weight = right.slider(
            t("How hard to push away"), 0.0, 3.0, NOT_WEIGHT, 0.1, key="not_weight"
        )
    if query is None:
        return None
    if but.strip():
        query = query.plus(Query.for_text(but), but_weight)
    return query.without(nots.split(","), not_weight)


def welcome(service: Service, selection: Selection, mode: str) -> None:
    if service.counts(selection.collection)["items"] == 0:
        st.info(
            t("This collection is empty — add a folder in the Index tab."),
            icon=":material/folder_open:",
        )
        return
    hint = (
        t("Type a description above, or pick an example")
        if mode == "Text"
        else t("Upload an example image above")
    )
    st.info(
        t("{hint}; on any result, “More like this” finds its neighbours.", hint=hint),
        icon=":material/lightbulb:",
    )
    if mode == "Text":
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


def show_closest() -> None:
    st.session_state.confidence = 0.0


def use_example(example: str) -> None:
    st.session_state.mode = "Text"
    st.session_state.text_query = example
    forget_like()


def why_empty(outcome: Outcome, threshold: float, kind: str | None) -> str:
    message = EMPTY.get(outcome.empty, "Nothing similar was found.")
    best = outcome.best_score
    hint = (
        t(" The best match scores {best:.2f}.", best=best)
        if outcome.empty == "below_threshold" and best
        else ""
    )
    return t(message, kinds=t(f"{kind}s") if kind else "", threshold=threshold) + hint


def main() -> None:
    service = get_service(Settings.from_env())
    restore(service, {"mode": MODES, "show": tuple(SHOWS)})
    selection, k, threshold, order = sidebar(service)
    if selection is None:
        st.info(t("Create a collection in the sidebar to start."))
        return
    remember(selection.collection, selection.model, threshold)
    counts = service.counts(selection.collection)
    name = Path(selection.collection).name
    images = counted(counts["images"], "image", "images")
    videos = counted(counts["videos"], "video", "videos")
    st.caption(md(f"{name} · {images} · {videos}"))
    if missing := service.missing_message(selection.model):
        model_download(service, selection, missing)
        return
    search, index = st.tabs([t("Search"), t("Index|tab")])
    with search:
        search_tab(service, selection, k, threshold, order)
    with index:
        index_tab(service, selection)


main()

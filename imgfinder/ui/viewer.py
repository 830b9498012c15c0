"""The viewer a result opens in: the picture or the moment playing, fitted to the window,
with arrow keys and buttons stepping through the results, the file's details, "more like
this", download and the relevance map. Layout and wording only."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from imgfinder.errors import ImgFinderError
from imgfinder.service import Details, Moment, Query, Result, Selection, Service
from imgfinder.textfmt import display_path, format_bytes, format_ms
from imgfinder.textfmt import escape_markdown as md
from imgfinder.timefmt import format_timestamp
from imgfinder.ui import asset
from imgfinder.ui.words import t

#: seconds a map may take on the page; a slow model gets a coarser map from fewer views
MAP_BUDGET = 5.0
#: a moment of one sampled frame still plays this long
MIN_PLAY = 3.0
METHOD_LABELS = {"masks": "Hiding parts", "gradcam": "Gradients (PyTorch)"}
WHY_HELP = (
    "A heat map of the regions that make this image match: the model is shown the image "
    "hundreds of times with parts hidden, and the parts whose absence lowers the score "
    "light up."
)


def open_viewer(index: int, moment: int | None = None) -> None:
    st.session_state.viewer = {"index": index, "moment": moment}


def close_viewer() -> None:
    st.session_state.pop("viewer", None)


def step(by: int, count: int) -> None:
    index = st.session_state.viewer["index"]
    open_viewer((index + by) % count)


def show_viewer(
    service: Service, selection: Selection, query: Query, results: list[Result]
) -> None:
    """The open viewer, if a result was clicked (made per call, so that its title is in the
    session's language)."""
    if st.session_state.get("viewer") is None or not results:
        return
    st.html(f"<style>{asset('viewer.css')}</style>")
    dialog = st.dialog(t("Viewer"), width="large", on_dismiss=close_viewer)
    dialog(viewer_body)(service, selection, query, results)


def viewer_body(
    service: Service, selection: Selection, query: Query, results: list[Result]
) -> None:
    state = st.session_state.get("viewer")
    if state is None:
        return
    index = min(state["index"], len(results) - 1)
    result, collection = results[index], selection.collection
    hit = result.hit
    if result.moments:
        play(service, collection, result, state.get("moment"))
    elif st.toggle(t("Why it matched"), key=f"why-{hit.item_id}", help=t(WHY_HELP)):
        relevance_map(service, selection, query, hit.item_id)
    elif (larger := service.preview(collection, hit.path)) is not None:
        st.image(str(larger), width="stretch")
    facts, actions = st.columns([3, 2])
    with facts:
        details(service.details(collection, hit), result, index, len(results))
    with actions:
        buttons(service, collection, result, len(results))


def details(found: Details, result: Result, index: int, count: int) -> None:
    hit = result.hit
    st.markdown(f"**{md(result.name)}** · {index + 1} / {count}")
    st.caption(md(display_path(hit.path)))
    facts = [t("score {score:.3f}", score=hit.score)]
    if hit.confidence is not None:
        facts.append(t("confidence {confidence:.0%}", confidence=hit.confidence))
    if found.taken:
        facts.append(found.taken.replace("T", " "))
    if found.width and found.height:
        facts.append(f"{found.width} × {found.height}")
    if found.size is not None:
        facts.append(format_bytes(found.size))
    if found.duration:
        facts.append(format_timestamp(found.duration))
    st.caption(md(" · ".join(facts)))
    camera = [part for part in (found.camera, found.lens, found.exposure) if part]
    if camera:
        st.caption(md(" · ".join(camera)))
    if found.copies:
        st.caption(md(t("Also at: {paths}", paths=", ".join(found.copies))))


def buttons(service: Service, collection: str, result: Result, count: int) -> None:
    hit = result.hit
    left, right = st.columns(2)
    left.button(
        t("Previous"),
        key="viewer-previous",
        icon=":material/arrow_back:",
        shortcut="Left",
        on_click=step,
        args=(-1, count),
        width="stretch",
        disabled=count == 1,
    )
    right.button(
        t("Next"),
        key="viewer-next",
        icon=":material/arrow_forward:",
        icon_position="right",
        shortcut="Right",
        on_click=step,
        args=(1, count),
        width="stretch",
        disabled=count == 1,
    )
    left.download_button(
        t("Download"),
        data=lambda: service.read_original(collection, hit.path),
        file_name=display_path(Path(hit.path).name),
        icon=":material/download:",
        key=f"original-{hit.item_id}",
        on_click="ignore",  # a rerun would close the viewer while the download starts
        width="stretch",
    )
    if right.button(
        t("More like this"),
        key=f"viewer-like-{hit.item_id}",
        icon=":material/auto_awesome:",
        width="stretch",
    ):
        st.session_state.like = {"item_id": result.best_item, "name": result.name}
        close_viewer()
        st.rerun()


def play(service: Service, collection: str, result: Result, chosen: int | None) -> None:
    """The moment playing at once from its start, muted, stopping at its end; under it the
    video's timeline with every matching moment, each a button that plays it."""
    moments = result.moments
    if chosen is None or not 0 <= chosen < len(moments):
        chosen = max(range(len(moments)), key=lambda i: moments[i].score)
    moment = moments[chosen]
    try:
        st.video(
            service.read_original(collection, result.hit.path),
            start_time=int(moment.t_start),
            end_time=play_until(moment, result.duration),
            autoplay=True,
            muted=True,
        )
    except (ImgFinderError, OSError) as exc:
        st.error(md(str(exc)))
    st.html(timeline(result, chosen))
    columns = st.columns(min(len(moments), 6))  # six a row, the rest in rows below
    for number, each in enumerate(moments):
        columns[number % len(columns)].button(
            format_timestamp(each.t_start),
            key=f"viewer-moment-{each.item_id}",
            type="primary" if number == chosen else "secondary",
            help=t("score {score:.3f}", score=each.score),
            on_click=choose_moment,
            args=(number,),
            width="stretch",
        )


def play_until(moment: Moment, duration: float | None) -> int:
    """Where a moment stops: its end, at least `MIN_PLAY` after its start, never past the
    video's end (whole seconds, as the player counts)."""
    end = max(moment.t_end, moment.t_start + MIN_PLAY)
    if duration:
        end = min(end, duration)
    return max(int(end + 0.999), int(moment.t_start) + 1)


def timeline(result: Result, chosen: int) -> str:
    """The video's length as a bar with its matching moments marked, the playing one
    highlighted (HTML the page draws; it holds numbers and times only)."""
    length = result.duration or max(moment.t_end for moment in result.moments) or 1.0
    marks = []
    for number, moment in enumerate(result.moments):
        left = 100 * min(moment.t_start / length, 1.0)
        width = max(100 * (moment.t_end - moment.t_start) / length, 0.6)
        playing = " playing" if number == chosen else ""
        marks.append(
            f'<i class="mark{playing}" style="left:{left:.2f}%;width:{width:.2f}%" '
            f'title="{format_timestamp(moment.t_start)}"></i>'
        )
    end = format_timestamp(result.duration) if result.duration else ""
    return (
        f'<div class="timeline" role="img" aria-label="{t("Matching moments")}">'
        f"{''.join(marks)}</div>"
        f'<div class="timeline-ends"><span>00:00:00</span><span>{end}</span></div>'
    )


def choose_moment(number: int) -> None:
    st.session_state.viewer = {**st.session_state.viewer, "moment": number}


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
    st.caption(
        t(
            "Brightest where the match is strongest · {method}{views} · {time}",
            method=method,
            views=views,
            time=format_ms(found.seconds),
        )
    )

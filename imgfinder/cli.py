"""`imgfinder` command line: index, search, info, check, repair, models, demo, eval."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Column, Table
from rich.text import Text

from imgfinder.errors import ImgFinderError

app = typer.Typer(
    help="Semantic search over your own photos and videos, offline on a CPU.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(soft_wrap=True)
errors = Console(stderr=True)
_state: dict[str, Any] = {"debug": False}

CollectionOpt = Annotated[
    str,
    typer.Option(
        "--collection", "-c", help="Collection name (in the data folder) or a path (/… or ./…)."
    ),
]
ModelOpt = Annotated[
    str | None, typer.Option("--model", "-m", help="Model key from `imgfinder models list`.")
]
IndexerOpt = Annotated[
    str,
    typer.Option(
        "--indexer",
        "-i",
        help="exact (the original's 'dummy'), faiss, hnsw, qdrant, or auto (exact, or an HNSW "
        "graph for big collections).",
    ),
]
ParamOpt = Annotated[
    list[str] | None,
    typer.Option("--param", "-p", help="Indexer parameter NAME=VALUE, e.g. factory=HNSW32."),
]
ModelDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--model-dir", help="Where downloaded models live (default: the data folder's models/)."
    ),
]
RuntimeOpt = Annotated[str, typer.Option(help="auto, torch, onnx or onnx-int8.")]
FramingOpt = Annotated[
    str,
    typer.Option(
        help="crop (the centre square, as models are trained) or pad (the whole picture, "
        "padded to a square); auto: as the collection was indexed."
    ),
]


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log each skipped file.")
    ] = False,
) -> None:
    _state["debug"] = debug
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.ERROR,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if verbose and not debug:  # our own skips, not every library's start-up chatter
        logging.getLogger("imgfinder").setLevel(logging.INFO)


def _parse_params(params: list[str] | None) -> dict[str, Any]:
    from imgfinder.errors import ConfigError

    parsed: dict[str, Any] = {}
    for item in params or []:
        if "=" not in item:
            raise ConfigError(f"indexer parameter '{item}' is not NAME=VALUE")
        name, value = item.split("=", 1)
        try:
            parsed[name] = json.loads(value)
        except ValueError:
            parsed[name] = value
    return parsed


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:6.1f} files/s" if speed else "   ... files/s", style="cyan")


@app.command()
def index(
    paths: Annotated[list[Path], typer.Argument(help="Folders or files to index.")],
    collection: CollectionOpt = "default",
    model: ModelOpt = None,
    indexer: IndexerOpt = "exact",
    param: ParamOpt = None,
    model_dir: ModelDirOpt = None,
    runtime: RuntimeOpt = "auto",
    framing: FramingOpt = "auto",
    batch_size: Annotated[int, typer.Option(help="Images per model call.")] = 32,
    workers: Annotated[int, typer.Option(help="Decoding threads.")] = 2,
    every: Annotated[float, typer.Option(help="Seconds between sampled video frames.")] = 1.0,
    scene_cuts: Annotated[
        bool, typer.Option(help="Also sample a video frame at each scene cut.")
    ] = True,
    video_time_limit: Annotated[
        float, typer.Option(help="Seconds per video, plus one per second of footage.")
    ] = 600.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    profile: Annotated[
        bool,
        typer.Option(
            "--profile", help="Also say where the time went: per phase and per item, CPU, memory."
        ),
    ] = False,
    no_wait: Annotated[
        bool,
        typer.Option("--no-wait", help="Stop at once if another run is indexing this collection."),
    ] = False,
) -> None:
    """Index (or re-index incrementally) folders of images and videos."""
    from imgfinder.errors import ConfigError
    from imgfinder.media.frames import VideoSampling

    if not any(path.exists() for path in paths):  # some missing: skipped and counted below
        raise ConfigError(f"there is no file or folder at {', '.join(map(str, paths))}")
    service = _service(model_dir)
    target = service.collection(service.settings.collection_path(collection))
    chosen = _selection(service, target.dir, model, runtime, indexer, param, framing)
    video = VideoSampling(every=every, scene_cuts=scene_cuts, time_limit=video_time_limit)
    labels = {"scan": "scanning", "embed": "embedding", "video": "videos"}
    try:
        with Progress(
            TextColumn("[bold]{task.description:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            _RateColumn(),
            TimeRemainingColumn(),
            console=errors,
            transient=True,
            disable=as_json or not errors.is_terminal,
        ) as bar:
            tasks: dict[str, Any] = {}

            def on_progress(event) -> None:
                if event.phase not in tasks:
                    tasks[event.phase] = bar.add_task(
                        labels.get(event.phase, event.phase), total=None
                    )
                bar.update(tasks[event.phase], completed=event.done, total=event.total or None)

            def on_wait() -> None:
                errors.print(f"waiting for another run to finish indexing {target.dir} ...")

            report = service.index(
                chosen,
                paths,
                video=video,
                progress=on_progress,
                batch_size=batch_size,
                workers=workers,
                wait=not no_wait,
                on_wait=on_wait,
            )
    except KeyboardInterrupt:  # the progress display is gone (transient) when we get here
        errors.print("interrupted; run the same command again to resume")
        raise typer.Exit(130) from None
    summary = report.summary()
    if as_json:
        summary["skipped_files"] = [{"path": s.path, "reason": s.reason} for s in report.skipped]
        console.print_json(json.dumps(summary))
        return
    table = Table(title=f"collection {target.dir}", show_header=False)
    rows = ("scanned", "indexed", "unchanged", "renamed", "copies", "skipped", "left", "removed")
    rows += ("frames", "seconds")
    for key in rows:
        table.add_row(key, str(summary[key]))
    for reason, count in report.skipped_by_reason().items():
        table.add_row(f"  skipped: {reason}", str(count))
    if report.cancelled:
        table.add_row("cancelled", "yes — run again to resume")
    console.print(table)
    _list_skipped(report.skipped)
    if profile:
        console.print(_profile_table(summary))


#: skipped files named under an index run's summary; more are counted, -v or --json lists them
SKIPPED_SHOWN = 10


def _list_skipped(skipped: list[Any]) -> None:
    """Which files were skipped and why, unless -v logged each one already."""
    from imgfinder.textfmt import display_path

    if not skipped or logging.getLogger("imgfinder").isEnabledFor(logging.INFO):
        return
    for each in skipped[:SKIPPED_SHOWN]:
        console.print(Text(f"skipped {display_path(each.path)}: {each.reason}"), soft_wrap=True)
    if len(skipped) > SKIPPED_SHOWN:
        console.print(f"… and {len(skipped) - SKIPPED_SHOWN} more; -v or --json lists them all")


#: the run's own phases (wall seconds), then the worker threads' CPU per item
_PROFILE_ROWS = (
    ("loading the model", "model_seconds", "s"),
    ("waiting for decoded images", "wait_seconds", "s"),
    ("embedding", "embed_seconds", "s"),
    ("storing vectors and rows", "store_seconds", "s"),
    ("videos", "video_seconds", "s"),
    ("hashing, CPU per file", "hash_ms_per_file", "ms"),
    ("decoding, CPU per image", "decode_ms_per_image", "ms"),
    ("embedding, per image", "embed_ms_per_image", "ms"),
    ("storing, per image", "store_ms_per_image", "ms"),
    ("throughput", "items_per_s", "files/s"),
    ("CPU, all threads", "cpu_seconds", "s"),
    ("peak memory", "peak_rss_mb", "MB"),
)


def _profile_table(summary: dict[str, Any]) -> Table:
    table = Table(title="where the time went", show_header=False)
    for label, key, unit in _PROFILE_ROWS:
        table.add_row(label, f"{summary[key]:g} {unit}")
    return table


NotOpt = Annotated[
    list[str] | None,
    typer.Option("--not", help="Push results away from this text; repeat for more."),
]
NotWeightOpt = Annotated[
    float, typer.Option(help="How hard the --not terms push, shared between them (0-10).")
]
TextWeightOpt = Annotated[
    float, typer.Option(help="With --image and a text: how much the text counts (0-10).")
]


@app.command()
def search(
    query: Annotated[str | None, typer.Argument(help="Text query, Russian or English.")] = None,
    image: Annotated[
        Path | None,
        typer.Option("--image", help="Find images like this one (with a text: like it, but …)."),
    ] = None,
    exclude: NotOpt = None,
    not_weight: NotWeightOpt = 0.5,
    text_weight: TextWeightOpt = 1.0,
    augment: Annotated[
        bool,
        typer.Option(
            "--augment", help="With --image: average it with its mirror and a closer view."
        ),
    ] = False,
    collection: CollectionOpt = "default",
    model: ModelOpt = None,
    indexer: IndexerOpt = "exact",
    param: ParamOpt = None,
    model_dir: ModelDirOpt = None,
    runtime: RuntimeOpt = "auto",
    framing: FramingOpt = "auto",
    k: Annotated[int, typer.Option("-k", help="How many results.")] = 24,
    threshold: Annotated[
        float | None,
        typer.Option(
            help="Minimum confidence (0-1) or, with --scale cosine, cosine similarity "
            "(default: 0.95 confidence; 0 shows the closest anyway)."
        ),
    ] = None,
    scale: Annotated[
        str, typer.Option(help="confidence (against unrelated queries) or cosine.")
    ] = "confidence",
    only: Annotated[
        str | None, typer.Option("--only", help="image or video: show only that kind.")
    ] = None,
    folder: Annotated[
        str | None,
        typer.Option(help="Only files under this folder (or one under an indexed folder)."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="Only what was taken on or after this day, YYYY-MM-DD (the photo's EXIF "
            "date, else the file's time)."
        ),
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Only what was taken on or before this day, YYYY-MM-DD.")
    ] = None,
    label: Annotated[
        str | None, typer.Option(help="Only items of this label (see imgfinder labels).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
) -> None:
    """Search a collection by text, by example image, or both ("like this, but at night");
    --not pushes results away from a text ("red" --not circle)."""
    from imgfinder.errors import ConfigError

    if only not in (None, "image", "video"):
        raise ConfigError(f"--only takes image or video, not {only!r}")
    wanted = _query(query, image, exclude, not_weight, text_weight, augment)
    service = _service(model_dir)
    chosen = _selection(
        service, service.named(collection, paths=True), model, runtime, indexer, param, framing
    )
    if threshold is None:
        threshold = service.default_threshold(service.model_info(chosen.model), scale)
    if folder is not None and os.path.isdir(folder):
        folder = os.path.abspath(folder)  # a shell's relative path means from here
    within = service.within(chosen.collection, only, folder, since, until, label)
    outcome = service.find(chosen, wanted, k, threshold, within, scale=scale)
    if indexer == "auto":
        recall = service.model(chosen).recall()
        errors.print(f"auto chose {outcome.indexer} (recall@10 {recall:.3f} against exact)")
    hits = outcome.hits
    if as_json:
        console.print_json(json.dumps([hit.to_dict() for hit in hits]))
        return
    if not hits:
        given = {"--folder": folder, "--since": since, "--until": until, "--label": label}
        why = _why_no_hits(outcome, threshold, [k for k, v in given.items() if v])
        if outcome.empty == "filtered_out" and within.folder and not os.path.isdir(within.folder):
            why += f" (there is no folder {within.folder})"
        errors.print(why)
        return
    for hit in hits:
        console.print(Text(_format_hit(hit)))


def _query(
    text: str | None,
    image: Path | None,
    exclude: list[str] | None,
    not_weight: float,
    text_weight: float,
    augment: bool = False,
) -> Any:
    """The service's Query for a command's text, --image, --augment and --not options."""
    from imgfinder.errors import ConfigError
    from imgfinder.service import Query

    if text is None and image is None:
        raise ConfigError("give a text query, --image FILE, or both")
    if image is None:
        wanted = Query.for_text(text or "")
    else:
        wanted = Query.for_image_file(image, augment)
        if text is not None:
            wanted = wanted.plus(Query.for_text(text), text_weight)
    return wanted.without(exclude or [], not_weight)


def _service(model_dir: Path | None = None):
    """The facade every shell calls, with this process's settings."""
    from dataclasses import replace

    from imgfinder.config import Settings
    from imgfinder.service import Service

    settings = Settings.from_env()
    if model_dir is not None:
        settings = replace(settings, model_dir=str(model_dir))
    return Service(settings)


def _selection(
    service: Any,
    path: Path,
    model: str | None,
    runtime: str,
    indexer: str,
    params: list[str] | None,
    framing: str = "auto",
) -> Any:
    """The service's Selection for a collection and the command's model and index options."""
    from imgfinder.service import Selection

    key = model or service.default_model(path)
    given = tuple(sorted(_parse_params(params).items()))
    return Selection(str(path), key, runtime, indexer, given, framing)


def _why_no_hits(outcome: Any, threshold: float, filters: list[str]) -> str:
    if outcome.empty == "no_confident_match":
        closest = ""
        if outcome.best_score is not None:
            closest = (
                f" (the closest scores {outcome.best_score:.3f}, "
                f"confidence {outcome.best_confidence or 0:.2f})"
            )
        return f"no confident matches{closest}; --threshold 0 shows the closest anyway"
    if outcome.empty == "below_threshold":
        return f"no results above {threshold}"
    if outcome.empty == "filtered_out":
        named = " and ".join(filters) if filters else "the filters given"
        return f"nothing in this collection passes {named}"
    return "no results"


def _format_hit(hit) -> str:
    from imgfinder.timefmt import format_taken, format_timestamp

    confidence = f"  confidence {hit.confidence:.2f}" if hit.confidence is not None else ""
    taken = f"  {format_taken(hit.taken)}" if hit.taken else ""
    if hit.kind == "video" and hit.t_start is not None:
        span = f"{format_timestamp(hit.t_start)}–{format_timestamp(hit.t_end)}"
        return f"{hit.path}  {span}  {hit.score:.3f}{confidence}{taken}"
    return f"{hit.path}  {hit.score:.3f}{confidence}{taken}"


@app.command()
def explain(
    query: Annotated[str | None, typer.Argument(help="Text query, Russian or English.")],
    image: Annotated[Path, typer.Argument(help="The image to explain.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the map (PNG).")],
    like: Annotated[
        Path | None,
        typer.Option("--like", help="Explain similarity to this image (with a text: and it)."),
    ] = None,
    exclude: NotOpt = None,
    not_weight: NotWeightOpt = 0.5,
    text_weight: TextWeightOpt = 1.0,
    method: Annotated[
        str, typer.Option(help="masks (any runtime) or gradcam (needs torch).")
    ] = "masks",
    budget: Annotated[
        float | None,
        typer.Option(help="Seconds the masks may take; a slow model gets a coarser map."),
    ] = None,
    model: ModelOpt = None,
    model_dir: ModelDirOpt = None,
    runtime: RuntimeOpt = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the details as JSON.")] = False,
) -> None:
    """Draw where in IMAGE its match with the query lies; give "" as the query with --like."""
    from imgfinder.atomic import atomic_write

    wanted = _query(query or None, like, exclude, not_weight, text_weight)
    service = _service(model_dir)
    key = model or service.default_model()
    found = service.explain_file(key, runtime, wanted, image, method, budget)
    atomic_write(out, lambda handle: found.overlay().save(handle, format="PNG"))
    x, y = found.peak
    if as_json:
        details = {"map": str(out), "peak": [x, y], "score": found.score, "method": found.method}
        console.print_json(json.dumps({**details, "seconds": found.seconds, "views": found.views}))
        return
    console.print(
        f"{out}: strongest at {x:.0%} across, {y:.0%} down; score {found.score:.3f} "
        f"({found.method}, {found.seconds:.2f} s)"
    )


@app.command()
def info(
    collection: CollectionOpt = "default",
    as_json: Annotated[bool, typer.Option("--json", help="Print the details as JSON.")] = False,
) -> None:
    """Show what a collection holds."""
    service = _service()
    path = service.named(collection, paths=True)
    details = {"collection": str(path), **service.info(path)}
    details.pop("name")
    if as_json:
        console.print_json(json.dumps(details))
        return
    table = Table(show_header=False)
    for key, value in details.items():
        table.add_row(key, Text(_info_cell(value)))
    console.print(table)


def _info_cell(value: Any) -> str:
    """One `info` value for people: a line per root or per embedder (JSON has the rest)."""
    if isinstance(value, dict):
        return "\n".join(
            f"{key} ({', '.join(f'{name} {detail}' for name, detail in entry.items())})"
            for key, entry in value.items()
        )
    if isinstance(value, list):
        return "\n".join(map(str, value))
    return "" if value is None else str(value)


@app.command()
def check(
    collection: CollectionOpt = "default",
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
) -> None:
    """Check a collection: SQLite integrity, vector files against the catalog, saved indexes."""
    service = _service()
    path = service.settings.collection_path(collection)
    problems = service.check(path)
    if as_json:
        found = [{"problem": p.what, "repairable": p.repairable} for p in problems]
        console.print_json(json.dumps({"collection": str(path), "problems": found}))
    elif not problems:
        console.print(Text(f"{path}: sound"))
    for problem in [] if as_json else problems:
        fix = "repair redoes it" if problem.repairable else "repair cannot fix this"
        console.print(Text(f"{problem.what} ({fix})"))
    if problems:
        raise typer.Exit(1)


@app.command()
def repair(collection: CollectionOpt = "default") -> None:
    """Redo only what `check` finds missing or damaged; what is sound is kept."""
    service = _service()
    path = service.settings.collection_path(collection)
    report = service.repair(path)
    if not report.found:
        console.print(Text(f"{path}: sound, nothing to repair"))
    for model, contents in report.reembedded.items():
        console.print(Text(f"re-embedded {contents} files with {model}"))
    if report.saved_indexes_removed:
        console.print(Text(f"removed {report.saved_indexes_removed} damaged saved indexes"))
    if report.temp_files_removed:
        console.print(Text(f"removed {report.temp_files_removed} temporary files of killed runs"))
    for problem in report.left:
        errors.print(Text(f"not repaired: {problem.what}"))
    if report.left:
        raise typer.Exit(1)


@app.command()
def serve(
    host: Annotated[
        str | None,
        typer.Option(help="Address to listen on (default: IMGFINDER_HOST or 127.0.0.1)."),
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port (default: IMGFINDER_PORT or 8000).")
    ] = None,
) -> None:
    """Serve the HTTP API (OpenAPI at /docs); off loopback it needs IMGFINDER_API_KEY."""
    from dataclasses import replace

    from imgfinder.config import Settings
    from imgfinder.errors import MissingExtraError

    settings = Settings.from_env()
    settings = replace(settings, host=host or settings.host, port=port or settings.port)
    try:
        import uvicorn

        from imgfinder.api import create_app
    except ImportError as exc:
        raise MissingExtraError("fastapi and uvicorn", "api") from exc
    api = create_app(settings)
    errors.print(f"serving the API on http://{settings.host}:{settings.port} (docs at /docs)")
    uvicorn.run(api, host=settings.host, port=settings.port, log_level="warning")


@app.command()
def watch(
    collection: CollectionOpt = "default",
    model: ModelOpt = None,
    model_dir: ModelDirOpt = None,
    runtime: RuntimeOpt = "auto",
    quiet: Annotated[
        float, typer.Option(help="Seconds without a change before a folder is re-indexed.")
    ] = 3.0,
    off: Annotated[
        bool,
        typer.Option("--off", help="Stop watching (a running page stops at its next look)."),
    ] = False,
) -> None:
    """Watch the collection's indexed folders and re-index them as files come, change or go,
    until Ctrl-C; the page and the API server keep watching them too, until --off."""
    service = _service(model_dir)
    target = service.collection(service.settings.collection_path(collection))
    chosen = _selection(service, target.dir, model, runtime, "exact", None)
    if off:
        service.set_watching(chosen, False)
        console.print(f"no longer watching the folders of {target.dir}")
        return
    status = service.set_watching(chosen, True, quiet)
    if status is None or not status.folders:
        errors.print("nothing to watch: index a folder into this collection first")
        raise typer.Exit(1)
    for folder, reason in status.skipped:
        errors.print(f"not watching {folder}: {reason}")
    console.print(f"watching {', '.join(status.folders)} (Ctrl-C stops)")
    runs = 0
    try:
        while True:
            time.sleep(0.5)
            status = service.watching(chosen, quiet)
            if status is not None and status.runs > runs:
                runs = status.runs
                counts = service.counts(target.dir)
                line = f"re-indexed at {time.strftime('%H:%M:%S')}: {counts['items']} items"
                console.print(f"{line}; {status.last_error}" if status.last_error else line)
    except KeyboardInterrupt:
        console.print("stopped; the page and the API server still watch until `watch --off`")
    finally:
        service.close()


collections_app = typer.Typer(help="List, rename and delete collections.", no_args_is_help=True)
app.add_typer(collections_app, name="collections")


@collections_app.command("list")
def collections_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print them as JSON.")] = False,
) -> None:
    """Every collection in the data folder, with what it holds."""
    service = _service()
    found = [service.info(path) for path in service.collections()]
    if as_json:
        console.print_json(json.dumps(found))
        return
    for info in found:
        roots = ", ".join(info["roots"]) or "no folder yet"
        line = f"{info['name']}  {info['images']} images, {info['videos']} videos  ({roots})"
        console.print(Text(line))


@collections_app.command("rename")
def collections_rename(
    name: Annotated[str, typer.Argument(help="The collection's name.")],
    new_name: Annotated[str, typer.Argument(help="Its new name.")],
) -> None:
    """Give a collection a new name (refused while it is being indexed)."""
    service = _service()
    service.rename_collection(service.named(name), new_name)
    errors.print(f"renamed {name} to {new_name}")


@collections_app.command("delete")
def collections_delete(
    name: Annotated[str, typer.Argument(help="The collection's name.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask first.")] = False,
) -> None:
    """Delete a collection's index (the photos and videos it indexed stay where they are)."""
    service = _service()
    path = service.named(name)
    if not yes and not typer.confirm(f"delete the index in {path}?"):
        raise typer.Exit(1)
    service.delete_collection(path)
    errors.print(f"deleted {path}")


labels_app = typer.Typer(
    help="Zero-shot classes: sort a collection's items into your own labels.",
    no_args_is_help=True,
)
app.add_typer(labels_app, name="labels")


@labels_app.command("set")
def labels_set(
    names: Annotated[list[str], typer.Argument(help='Labels, e.g. beach city "old documents".')],
    collection: CollectionOpt = "default",
    model: ModelOpt = None,
    model_dir: ModelDirOpt = None,
    prompt: Annotated[
        str | None,
        typer.Option(help='How a label becomes a query (default: "a photo of {}").'),
    ] = None,
) -> None:
    """Give every item the label it is closest to; search --label then keeps to one."""
    from imgfinder.classes import DEFAULT_PROMPT, parse_labels

    service = _service(model_dir)
    chosen = _selection(service, service.named(collection), model, "auto", "exact", None)
    service.set_labels(chosen.collection, parse_labels(names), prompt or DEFAULT_PROMPT)
    _print_counts(service.class_counts(chosen))


@labels_app.command("show")
def labels_show(
    collection: CollectionOpt = "default",
    model: ModelOpt = None,
    model_dir: ModelDirOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Each label and how many items it has."""
    service = _service(model_dir)
    chosen = _selection(service, service.named(collection), model, "auto", "exact", None)
    counts = service.class_counts(chosen)
    if as_json:
        console.print_json(json.dumps(counts))
    elif not counts:
        errors.print("this collection has no labels; set them with: imgfinder labels set ...")
    else:
        _print_counts(counts)


@labels_app.command("clear")
def labels_clear(collection: CollectionOpt = "default") -> None:
    """Stop sorting the collection's items into labels."""
    service = _service()
    service.set_labels(service.named(collection), ())
    errors.print("labels cleared")


def _print_counts(counts: dict[str, int]) -> None:
    for name, count in counts.items():
        console.print(Text(f"{count:>8}  {name}"))


demo_app = typer.Typer(help="The bundled demo model and demo collection.", no_args_is_help=True)
app.add_typer(demo_app, name="demo")


@demo_app.command("build")
def demo_build(
    folder: Annotated[
        Path | None,
        typer.Option(help="Where to generate the demo media (default: beside the collection)."),
    ] = None,
    collection: CollectionOpt = "demo",
    images: Annotated[int, typer.Option(help="How many demo images to generate.")] = 2000,
    seed: Annotated[int, typer.Option(help="Seed of the generated world.")] = 2024,
    if_missing: Annotated[
        bool, typer.Option("--if-missing", help="Do nothing if the collection exists.")
    ] = False,
) -> None:
    """Generate the demo folder (images and videos with known events) and index it."""
    from imgfinder.config import resolve_collection
    from imgfinder.demo_collection import build_demo
    from imgfinder.store.collection import MANIFEST

    started = time.perf_counter()
    target = resolve_collection(collection)
    if if_missing and (target / MANIFEST).is_file():
        return
    media = folder if folder is not None else target.parent / f"{target.name}_media"
    errors.print(f"building the demo collection {target} from {media} ...")
    summary = build_demo(media, target, images=images, seed=seed).summary()
    errors.print(
        f"demo ready in {time.perf_counter() - started:.1f} s: {summary['indexed']} files "
        f"indexed ({summary['frames']} video frames), {summary['unchanged']} unchanged, "
        f"{summary['skipped']} skipped"
    )


models_app = typer.Typer(help="Models: list, download, verify.", no_args_is_help=True)
app.add_typer(models_app, name="models")


@models_app.command("list")
def models_list(
    model_dir: ModelDirOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Every known model, and whether its files are present here."""
    models = _service(model_dir).models()
    if as_json:
        rows = [
            {
                "key": m.key,
                "family": m.family,
                "languages": list(m.languages),
                "present": m.present,
                "size_mb": m.size_mb,
                "imagenet_top1": m.imagenet_top1,
                "images_per_s": dict(m.images_per_s),
                "source": m.hf_repo,
            }
            for m in models
        ]
        console.print_json(json.dumps(rows))
        return
    wide = console.width >= 110  # else the source would fold into a sliver; --json has it
    table = Table(
        Column("model", no_wrap=True),  # the key `pull` needs, whole even in 80 columns
        Column("family", no_wrap=True),
        "languages",
        Column("size", no_wrap=True),
        "here",
        *([Column("ImageNet", no_wrap=True), Column("source", overflow="fold")] if wide else []),
    )
    for m in models:
        present = "yes" if m.present else "no"
        cells = [m.key, m.family, ", ".join(m.languages), f"{m.size_mb} MB", present]
        if wide:
            top1 = f"{m.imagenet_top1:.1f} %" if m.imagenet_top1 is not None else ""
            cells += [top1, Text(m.hf_repo or "bundled")]
        table.add_row(*cells)
    console.print(table)


@models_app.command("pull")
def models_pull(
    key: Annotated[str, typer.Argument(help="Model key.")],
    model_dir: ModelDirOpt = None,
) -> None:
    """Download a model's files (needs the internet), saying which file is under way."""

    def on_file(done: int, total: int, name: str) -> None:
        if name:
            errors.print(Text(f"[{done + 1}/{total}] {name}"))

    info = _service(model_dir).pull(key, progress=on_file)
    console.print(Text(f"{info.key} is ready in {info.path}"))


@models_app.command("verify")
def models_verify(
    key: Annotated[str, typer.Argument(help="Model key.")],
    model_dir: ModelDirOpt = None,
    runtime: RuntimeOpt = "auto",
) -> None:
    """Load a model and embed one text and one image, to prove it works here."""
    checked = _service(model_dir).verify_model(key, runtime)
    console.print(
        Text(
            f"{key}: ok ({checked.embedder_key}, dim {checked.dim}, "
            f"text·image {checked.similarity:.3f})"
        )
    )
    if checked.parity:
        console.print(Text(checked.parity))


@app.command("eval")
def evaluate(
    data: Annotated[Path, typer.Argument(help="Folder per class, or any folder with --queries.")],
    model: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="Model key; repeat to compare.")
    ] = None,
    indexer: Annotated[
        list[str] | None, typer.Option("--indexer", "-i", help="Indexer; repeat to compare.")
    ] = None,
    queries: Annotated[
        Path | None, typer.Option(help="CSV with query,relevant columns (relative paths).")
    ] = None,
    prompt: Annotated[str, typer.Option(help="Template turning a class name into a query.")] = "{}",
    framing: Annotated[
        list[str] | None,
        typer.Option(help="crop or pad (the whole picture, padded); repeat to compare."),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param", "-p", help="INDEXER.NAME=VALUE, e.g. hnsw.efSearch=16; repeatable."
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write results as JSON here.")] = None,
    markdown: Annotated[
        Path | None, typer.Option(help="Write the Markdown table here too.")
    ] = None,
) -> None:
    """Recall@k, precision@k, nDCG@k, mAP, image→image and zero-shot accuracy on labelled data."""
    from imgfinder.atomic import atomic_write_text
    from imgfinder.errors import ConfigError
    from imgfinder.eval_run import evaluate as run_evaluation
    from imgfinder.eval_run import load_labelled
    from imgfinder.evaluation import to_markdown

    per_indexer: dict[str, list[str]] = {}
    for item in param or []:
        name, dot, setting = item.partition(".")
        if not dot:
            raise ConfigError(f"eval parameter '{item}' is not INDEXER.NAME=VALUE")
        per_indexer.setdefault(name, []).append(setting)
    params = {name: _parse_params(settings) for name, settings in per_indexer.items()}
    labelled = load_labelled(data, queries, prompt)
    results = run_evaluation(
        labelled,
        model or ["demo"],
        indexer or ["exact"],
        indexer_params=params,
        framings=framing or ["crop"],
    )
    table = to_markdown(results)
    if out is not None:
        atomic_write_text(out, json.dumps(results, indent=2))
    if markdown is not None:
        atomic_write_text(markdown, table + "\n")
    console.print(Text(table))


#: options of the whole program, also accepted after the subcommand
GLOBAL_FLAGS = ("--debug", "--verbose", "-v")


def global_flags_first(args: list[str]) -> list[str]:
    """`imgfinder index PATH --debug` means `imgfinder --debug index PATH` (not "no such
    option"); nothing after a `--` moves."""
    end = args.index("--") if "--" in args else len(args)
    flags = [arg for arg in args[:end] if arg in GLOBAL_FLAGS]
    rest = [arg for i, arg in enumerate(args) if i >= end or arg not in GLOBAL_FLAGS]
    return flags + rest


def main() -> None:
    """Entry point: one clear line on errors, tracebacks only with --debug."""
    try:
        app(args=global_flags_first(sys.argv[1:]))
    except (ImgFinderError, OSError) as exc:
        if _state["debug"]:
            raise
        errors.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        errors.print("interrupted; run the same command again to resume")
        sys.exit(130)

"""The HTTP API: FastAPI over the same Service the page and the CLI call.

`imgfinder serve` runs it on uvicorn at 127.0.0.1; bound to any other address it refuses to
start without IMGFINDER_API_KEY, which every request must then carry (header `X-API-Key`, or
`Authorization: Bearer KEY`). Every error is JSON with one sentence: {"error": "..."}.
OpenAPI lives at /docs and /openapi.json.
"""

from __future__ import annotations

import asyncio
import io
import json
import mimetypes
import os
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict
from datetime import date
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import Depends, FastAPI, File, Query, Request, UploadFile
from fastapi import Path as FastPath
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field, StringConstraints
from starlette.exceptions import HTTPException as StarletteHTTPException

from imgfinder import __version__
from imgfinder.classes import DEFAULT_PROMPT, MAX_LABELS, Labels
from imgfinder.config import Settings
from imgfinder.errors import (
    BusyError,
    CatalogError,
    ConfigError,
    ImgFinderError,
    IndexerError,
    MediaError,
    MissingExtraError,
    ModelError,
    NotFoundError,
    StorageError,
)
from imgfinder.indexers.registry import CHOICES
from imgfinder.jobs import JobStatus
from imgfinder.media.served import UnsafePathError
from imgfinder.media.uploads import MAX_UPLOAD_BYTES
from imgfinder.queries import MAX_WEIGHT, NOT_WEIGHT, WITH_WEIGHT
from imgfinder.search import Hit
from imgfinder.service import Outcome, Selection, Service
from imgfinder.service import Query as SearchQuery

#: most specific first: the first matching class gives the status
_STATUS: tuple[tuple[type[ImgFinderError], int], ...] = (
    (NotFoundError, 404),
    (UnsafePathError, 404),
    (BusyError, 409),
    (StorageError, 507),
    (MissingExtraError, 501),
    (MediaError, 422),
    (ModelError, 409),
    (CatalogError, 409),
    (IndexerError, 400),
    (ConfigError, 400),
)
Kind = Literal["image", "video"]
K = Annotated[int, Query(ge=1, le=1000, description="How many results.", examples=[24])]
Threshold = Annotated[
    float | None,
    Query(
        ge=-1.0,
        le=1.0,
        description="Minimum confidence (0-1; 0.95 when left out, 0 for the closest anyway) "
        "or, with scale=cosine, minimum cosine similarity (the model's own when left out, -1 "
        "for all).",
        examples=[0.95],
    ),
]
ScaleName = Literal["confidence", "cosine"]
Scale = Annotated[
    ScaleName,
    Query(description="What threshold means: confidence against unrelated queries, or cosine."),
]
ItemId = Annotated[int, FastPath(ge=0, le=2**63 - 1, description="A stored item's id.")]
ModelKey = Annotated[
    str | None,
    Query(
        max_length=200, description="Model key (default: the one the collection was built with)."
    ),
]
IndexerName = Annotated[
    Literal[tuple(CHOICES)],
    Query(description="Vector index; auto picks exact or an HNSW graph by the collection's size."),
]  # type: ignore[valid-type]
#: how many "not" texts one query may carry: each is encoded, so the count is bounded
MAX_NOT_TERMS = 16
#: a "not" text: a blank one is ignored, as the library ignores it
NotText = Annotated[str, StringConstraints(max_length=1000)]
Exclude = Annotated[
    list[NotText],
    Query(
        alias="not",
        max_length=MAX_NOT_TERMS,
        description="Push the results away from this text; repeat for more (blank ones are "
        "ignored).",
        examples=[["circle"]],
    ),
]


def _weight(description: str, example: float) -> Any:
    """A term's weight as a query parameter: finite, from 0 to MAX_WEIGHT."""
    bounds = {"ge": 0.0, "le": MAX_WEIGHT, "allow_inf_nan": False}
    return Annotated[float, Query(description=description, examples=[example], **bounds)]


NotWeight = _weight(
    f"How hard the `not` texts push, shared between them (0-{MAX_WEIGHT:g}).", NOT_WEIGHT
)
WithText = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=1000,
        description='A text the results should also match ("like this, but at night").',
        examples=["at night"],
    ),
]
TextWeight = _weight(
    f"How much `q` counts beside the image or item (0-{MAX_WEIGHT:g}).", WITH_WEIGHT
)
Method = Annotated[
    Literal["masks", "gradcam"],
    Query(description="masks: any runtime; gradcam: needs the model's PyTorch runtime."),
]

#: the explain route's headers: what each says, and its OpenAPI type
_EXPLAIN_HEADERS = {
    "X-Peak-X": ("The hottest point's x, a fraction (0-1) of the width.", "number"),
    "X-Peak-Y": ("The hottest point's y, a fraction (0-1) of the height.", "number"),
    "X-Score": ("The whole image's cosine similarity to the query.", "number"),
    "X-Method": ("The method that made the map: masks or gradcam.", "string"),
}


class HitOut(BaseModel):
    """One result: an image, or a moment [t_start, t_end] of a video (t_best its peak)."""

    item_id: int
    path: str = Field(description="Relative to the indexed folder that holds it.")
    kind: Kind
    score: float = Field(description="Cosine similarity.")
    confidence: float | None = Field(
        None, description="Share of unrelated queries whose best match this hit beats."
    )
    t_start: float | None = None
    t_end: float | None = None
    t_best: float | None = None
    taken: str | None = Field(
        None, description="When it was taken by its EXIF, else the file's time (local, ISO)."
    )
    thumbnail: str = Field(description="URL of a small JPEG of the image or the moment.")


class SearchOut(BaseModel):
    hits: list[HitOut]
    empty: str | None = Field(
        None,
        description="Why there are no hits: nothing_indexed, no_such_kind, filtered_out, "
        "nothing_similar, below_threshold or no_confident_match.",
    )
    best_score: float | None = Field(
        None, description="With below_threshold or no_confident_match: the closest hit's score."
    )
    best_confidence: float | None = Field(None, description="And that hit's confidence.")
    encode_ms: float
    search_ms: float
    indexer: str = Field("", description="The index that answered (what auto chose).")


class Within(BaseModel):
    """What a search is limited to; the filter is applied inside the search, so k hits come
    back whenever k pass it."""

    kind: Kind | None = Field(None, description="Only images or only video moments.")
    folder: str | None = Field(
        None,
        min_length=1,
        max_length=4096,
        description="Only files under this folder: absolute, or relative to an indexed folder.",
        examples=["2024/Italy"],
    )
    since: date | None = Field(
        None,
        description="Only what was taken on or after this day: the photo's EXIF date, else "
        "the file's modification time.",
    )
    until: date | None = Field(None, description="Only what was taken on or before this day.")
    label: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="Only items sorted into this one of the collection's classes "
        "(see /collections/{name}/labels).",
        examples=["beach"],
    )


class TextSearch(Within):
    q: str = Field(min_length=1, max_length=1000, examples=["собака на пляже"])
    exclude: list[NotText] = Field(
        default_factory=list,
        alias="not",
        max_length=MAX_NOT_TERMS,
        description="Texts to push the results away from (blank ones are ignored).",
        examples=[["circle"]],
    )
    not_weight: float = Field(
        NOT_WEIGHT,
        ge=0.0,
        le=MAX_WEIGHT,
        allow_inf_nan=False,
        description="How hard the `not` texts push, shared between them.",
    )
    k: int = Field(24, ge=1, le=1000)
    threshold: float | None = Field(None, ge=-1.0, le=1.0)
    scale: ScaleName = "confidence"
    model: str | None = Field(None, max_length=200)
    indexer: str = "exact"


class NewCollection(BaseModel):
    name: str = Field(min_length=1, max_length=64, examples=["photos"])


class LabelsIn(BaseModel):
    """The classes a collection sorts its items into; no names: no classes."""

    names: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        max_length=MAX_LABELS, examples=[["beach", "mountains", "city", "documents"]]
    )
    prompt: str = Field(
        DEFAULT_PROMPT,
        min_length=2,
        max_length=200,
        description="How a label becomes a query: {} is where it goes.",
    )


class LabelsOut(BaseModel):
    names: list[str]
    prompt: str
    counts: dict[str, int] = Field(description="Stored items per label, by the chosen model.")


class NewJob(BaseModel):
    folder: str = Field(min_length=1, max_length=4096, examples=["/home/me/Pictures"])


class SkippedOut(BaseModel):
    path: str = Field(description="relative to the indexed folder that holds it")
    reason: str


class JobOut(BaseModel):
    state: str = Field(description="running, done, cancelled or failed")
    phase: str
    done: int
    total: int
    elapsed: float
    summary: dict[str, Any] | None = None
    error: str = ""
    skipped: list[SkippedOut] = Field(default=[], description="each file skipped, and why")


def create_app(settings: Settings | None = None, service: Service | None = None) -> FastAPI:
    """The API over `service` (one is made from `settings`, default the environment's)."""
    settings = settings or (service.settings if service else Settings.from_env())
    if not settings.loopback and not settings.api_key:
        raise ConfigError(
            f"listening on {settings.host} needs an API key: set IMGFINDER_API_KEY, which "
            f"every request must then carry"
        )
    facade = service or Service(settings)
    app = FastAPI(
        title="imgfinder",
        version=__version__,
        description="Semantic search over your own photos and videos.",
        dependencies=[Depends(_key_checker(settings.api_key))],
    )
    app.state.service = facade
    _add_error_handlers(app)
    _add_routes(app, facade)
    app.router.add_event_handler("shutdown", facade.close)
    return app


def _key_checker(expected: str | None):
    def check(request: Request) -> None:
        if expected is None or request.url.path == "/health":  # container health checks
            return
        given = request.headers.get("x-api-key") or ""
        bearer = request.headers.get("authorization", "")
        if bearer.lower().startswith("bearer "):
            given = given or bearer[7:]
        if not secrets.compare_digest(given.encode(), expected.encode()):
            raise StarletteHTTPException(401, "a valid API key is needed (header X-API-Key)")

    return check


def _error(status: int, message: str) -> JSONResponse:
    message = message.strip() or "something went wrong"
    message = message[0].upper() + message[1:]
    if not message.endswith((".", "?", "!")):
        message += "."
    return JSONResponse({"error": message}, status_code=status)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ImgFinderError)
    async def library_error(_: Request, exc: ImgFinderError) -> JSONResponse:
        status = next((code for cls, code in _STATUS if isinstance(exc, cls)), 400)
        return _error(status, str(exc))

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        places = ("body", "query", "path", "header", "cookie")
        where = ".".join(str(part) for part in first.get("loc", ()) if part not in places)
        return _error(422, f"{where}: {first.get('msg', 'invalid')}" if where else "invalid")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        return _error(500, "an unexpected error stopped this request; see the server log")


def _add_routes(app: FastAPI, service: Service) -> None:
    def selection(name: str, model: str | None, indexer: str = "exact") -> Selection:
        path = service.named(name)
        key = model or service.default_model(path)
        return Selection(str(path), key, indexer=indexer)

    def labels_out(chosen: Selection, found: Labels | None) -> LabelsOut:
        if found is None:
            return LabelsOut(names=[], prompt=DEFAULT_PROMPT, counts={})
        counts = service.class_counts(chosen)
        return LabelsOut(names=list(found.names), prompt=found.prompt, counts=counts)

    def find(
        chosen: Selection,
        query: SearchQuery,
        k: int,
        threshold: float | None,
        within: Within,
        scale: str,
    ) -> Outcome:
        if threshold is None:
            threshold = service.default_threshold(service.model_info(chosen.model), scale)
        only = service.within(
            chosen.collection,
            within.kind,
            within.folder,
            within.since,
            within.until,
            within.label,
        )
        return service.find(chosen, query, k, threshold, only, scale=scale)

    def answer(name: str, chosen: Selection, outcome: Outcome) -> SearchOut:
        return SearchOut(
            hits=[_hit_out(service, name, chosen.collection, hit) for hit in outcome.hits],
            empty=outcome.empty or None,
            best_score=outcome.best_score,
            best_confidence=outcome.best_confidence,
            encode_ms=round(outcome.encode_s * 1000, 3),
            search_ms=round(outcome.search_s * 1000, 3),
            indexer=outcome.indexer,
        )

    @app.get("/health", tags=["service"])
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get("/collections", tags=["collections"])
    def collections() -> list[dict[str, Any]]:
        return [service.info(path) for path in service.collections()]

    @app.post("/collections", status_code=201, tags=["collections"])
    def create(body: NewCollection) -> dict[str, Any]:
        return service.info(service.create_collection(body.name))

    @app.get("/collections/{name}", tags=["collections"])
    def info(name: str) -> dict[str, Any]:
        return service.info(service.named(name))

    @app.patch("/collections/{name}", tags=["collections"])
    def rename(name: str, body: NewCollection) -> dict[str, Any]:
        """Rename a collection (body: its new name)."""
        return service.info(service.rename_collection(service.named(name), body.name))

    @app.delete("/collections/{name}", status_code=204, tags=["collections"])
    def delete(name: str) -> Response:
        service.delete_collection(service.named(name))
        return Response(status_code=204)

    @app.get("/collections/{name}/labels", tags=["collections"])
    def labels(name: str, model: ModelKey = None) -> LabelsOut:
        """The collection's classes and how many items each has (classifying new ones)."""
        chosen = selection(name, model)
        return labels_out(chosen, service.labels(chosen.collection))

    @app.put("/collections/{name}/labels", tags=["collections"])
    def set_labels(name: str, body: LabelsIn, model: ModelKey = None) -> LabelsOut:
        """Sort the collection's items into these labels (zero-shot, by the model)."""
        chosen = selection(name, model)
        return labels_out(chosen, service.set_labels(chosen.collection, body.names, body.prompt))

    @app.get("/models", tags=["models"])
    def models() -> list[dict[str, Any]]:
        return [
            {
                "key": info.key,
                "family": info.family,
                "languages": list(info.languages),
                "present": bool(info.present),
                "threshold": info.threshold,
                "imagenet_top1": info.imagenet_top1,
                "images_per_s": dict(info.images_per_s),
            }
            for info in service.models()
        ]

    @app.post("/models/{key}/pull", status_code=202, tags=["models"])
    def start_pull(key: str) -> dict[str, Any]:
        """Download a model's files in the background (needs the internet, once)."""
        return asdict(service.start_pull(key))

    @app.get("/models/{key}/pull", tags=["models"])
    def pull_status(key: str) -> dict[str, Any]:
        status = service.pull_status(key)
        if status is None:
            raise NotFoundError(f"{key} is not being downloaded")
        return asdict(status)

    @app.get("/collections/{name}/search", tags=["search"])
    def search_get(
        name: str,
        q: Annotated[str, Query(min_length=1, max_length=1000, examples=["red car at night"])],
        within: Annotated[Within, Query()],
        k: K = 24,
        threshold: Threshold = None,
        scale: Scale = "confidence",
        model: ModelKey = None,
        indexer: IndexerName = "exact",
        exclude: Exclude = [],  # noqa: B006 - FastAPI copies it; never mutated
        not_weight: NotWeight = NOT_WEIGHT,
    ) -> SearchOut:
        """Images and video moments matching a text, in Russian or English, and not the
        `not` texts."""
        chosen = selection(name, model, indexer)
        query = _combined(SearchQuery.for_text(q), None, WITH_WEIGHT, exclude, not_weight)
        found = find(chosen, query, k, threshold, within, scale)
        return answer(name, chosen, found)

    @app.post("/collections/{name}/search", tags=["search"])
    def search_post(name: str, body: TextSearch) -> SearchOut:
        if body.indexer not in CHOICES:
            raise ConfigError(f"indexer must be one of {', '.join(CHOICES)}")
        chosen = selection(name, body.model, body.indexer)
        query = _combined(
            SearchQuery.for_text(body.q), None, WITH_WEIGHT, body.exclude, body.not_weight
        )
        found = find(chosen, query, body.k, body.threshold, body, body.scale)
        return answer(name, chosen, found)

    @app.post("/collections/{name}/search/image", tags=["search"])
    def search_image(
        name: str,
        file: Annotated[UploadFile, File(description="A JPEG, PNG, WebP, HEIC or AVIF image.")],
        within: Annotated[Within, Query()],
        k: K = 24,
        threshold: Threshold = None,
        scale: Scale = "confidence",
        model: ModelKey = None,
        q: WithText = None,
        text_weight: TextWeight = WITH_WEIGHT,
        exclude: Exclude = [],  # noqa: B006 - FastAPI copies it; never mutated
        not_weight: NotWeight = NOT_WEIGHT,
        augment: Annotated[
            bool, Query(description="Average the image with its mirror and a closer view.")
        ] = False,
    ) -> SearchOut:
        """Images and moments that look like the uploaded image; with `q`, like it but also
        matching that text."""
        data = file.file.read(MAX_UPLOAD_BYTES + 1)
        chosen = selection(name, model)
        query = _combined(SearchQuery.for_image(data, augment), q, text_weight, exclude, not_weight)
        found = find(chosen, query, k, threshold, within, scale)
        return answer(name, chosen, found)

    @app.get("/collections/{name}/items/{item_id}/similar", tags=["search"])
    def similar(
        name: str,
        item_id: ItemId,
        within: Annotated[Within, Query()],
        k: K = 24,
        threshold: Threshold = None,
        scale: Scale = "confidence",
        model: ModelKey = None,
        q: WithText = None,
        text_weight: TextWeight = WITH_WEIGHT,
        exclude: Exclude = [],  # noqa: B006 - FastAPI copies it; never mutated
        not_weight: NotWeight = NOT_WEIGHT,
    ) -> SearchOut:
        """More like a stored image or video frame; with `q`, like it but also matching that
        text ("more like this, but at night")."""
        chosen = selection(name, model)
        query = _combined(SearchQuery.like(item_id), q, text_weight, exclude, not_weight)
        found = find(chosen, query, k, threshold, within, scale)
        return answer(name, chosen, found)

    @app.get(
        "/collections/{name}/items/{item_id}/explain",
        tags=["search"],
        response_class=Response,
        responses={
            200: {
                "content": {"image/png": {}},
                "description": "The item with its relevance map laid over it.",
                "headers": {
                    header: {"description": meaning, "schema": {"type": kind}}
                    for header, (meaning, kind) in _EXPLAIN_HEADERS.items()
                },
            }
        },
    )
    def explain(
        name: str,
        item_id: ItemId,
        q: Annotated[
            str | None,
            Query(
                min_length=1,
                max_length=1000,
                description="The text whose match to explain.",
                examples=["a red circle"],
            ),
        ] = None,
        like: Annotated[
            int | None,
            Query(ge=0, le=2**63 - 1, description="Or: explain the likeness to this stored item."),
        ] = None,
        text_weight: TextWeight = WITH_WEIGHT,
        exclude: Exclude = [],  # noqa: B006 - FastAPI copies it; never mutated
        not_weight: NotWeight = NOT_WEIGHT,
        method: Method = "masks",
        budget: Annotated[
            float | None,
            Query(
                gt=0.0,
                le=600.0,
                allow_inf_nan=False,
                description="Seconds the masking method may take; a slow model stops early "
                "with a coarser map (500 masks take about 32 s with ViT-B/32 on two cores).",
            ),
        ] = None,
        model: ModelKey = None,
    ) -> Response:
        """Which regions of a stored image (or a video's frame) make it match a query: a PNG
        of the item, dimmed where nothing counted and tinted red to yellow where the match is.

        Give `q`, `like`, or both (then `text_weight` says how much `q` counts). Headers:
        `X-Peak-X` and `X-Peak-Y`, the hottest point as fractions (0-1) of the width and the
        height; `X-Score`, the whole image's cosine similarity to the query; `X-Method`, the
        method that made the map.
        """
        if like is not None:
            query = _combined(SearchQuery.like(like), q, text_weight, exclude, not_weight)
        elif q is not None:
            query = _combined(SearchQuery.for_text(q), None, text_weight, exclude, not_weight)
        else:
            raise ConfigError("explain needs a text q, an item to look like, or both")
        relevance = service.explain(selection(name, model), query, item_id, method, budget)
        buffer = io.BytesIO()
        relevance.overlay().save(buffer, "PNG")
        x, y = relevance.peak
        headers = {
            "X-Peak-X": f"{x:.4f}",
            "X-Peak-Y": f"{y:.4f}",
            "X-Score": f"{relevance.score:.6f}",
            "X-Method": relevance.method,
        }
        return Response(buffer.getvalue(), media_type="image/png", headers=headers)

    @app.get("/collections/{name}/items/{item_id}/thumbnail", tags=["files"])
    def thumbnail(name: str, item_id: ItemId) -> FileResponse:
        path = service.named(name)
        made = service.thumbnail(path, service.item(path, item_id))
        if made is None:
            raise NotFoundError(f"item {item_id} has no thumbnail")
        return FileResponse(made, media_type="image/jpeg")

    @app.get("/collections/{name}/items/{item_id}/original", tags=["files"])
    def original(name: str, item_id: ItemId) -> Response:
        path = service.named(name)
        item = service.item(path, item_id)
        kind = mimetypes.guess_type(item.path)[0] or "application/octet-stream"
        # shown in the browser, and saved under its own name rather than as "original"
        name_bytes = quote(os.path.basename(item.path), errors="surrogateescape")
        disposition = f"inline; filename*=UTF-8''{name_bytes}"
        return Response(
            service.read_original(path, item.path),
            media_type=kind,
            headers={"Content-Disposition": disposition},
        )

    @app.post("/collections/{name}/jobs", status_code=202, tags=["indexing"])
    def start_job(name: str, body: NewJob, model: ModelKey = None) -> JobOut:
        """Index a folder into the collection in the background."""
        chosen = selection(name, model)
        return _job_out(service, chosen.collection, service.start_indexing(chosen, body.folder))

    @app.get("/collections/{name}/jobs/current", tags=["indexing"])
    def job(name: str) -> JobOut:
        path = service.named(name)
        status = service.job_status(path)
        if status is None:
            raise NotFoundError(f"the collection {name} has no index job")
        return _job_out(service, path, status)

    @app.get("/collections/{name}/jobs/current/events", tags=["indexing"])
    async def job_events(name: str) -> StreamingResponse:
        """Server-sent events: a `progress` event while the job runs, then `done`."""
        path = service.named(name)
        if service.job_status(path) is None:
            raise NotFoundError(f"the collection {name} has no index job")
        return StreamingResponse(_events(service, path), media_type="text/event-stream")

    @app.delete("/collections/{name}/jobs/current", status_code=202, tags=["indexing"])
    def cancel_job(name: str) -> JobOut:
        path = service.named(name)
        status = service.job_status(path)
        if status is None:
            raise NotFoundError(f"the collection {name} has no index job")
        service.cancel_indexing(path)
        return _job_out(service, path, status)


def _combined(
    base: SearchQuery,
    text: str | None,
    text_weight: float,
    exclude: Sequence[str],
    not_weight: float,
) -> SearchQuery:
    """`base` pulled toward `text` and pushed away from the `exclude` texts, the way the
    CLI's TEXT beside --image and its --not build a query; the library checks the weights."""
    if text is not None:
        base = base.plus(SearchQuery.for_text(text), text_weight)
    return base.without(exclude, not_weight)


async def _events(service: Service, path: Any) -> AsyncIterator[str]:
    while True:
        status = service.job_status(path)
        if status is None:
            return
        event = "progress" if status.running else "done"
        body = _job_out(service, path, status).model_dump()
        yield f"event: {event}\ndata: {json.dumps(body)}\n\n"
        if not status.running:
            return
        await asyncio.sleep(0.25)


def _job_out(service: Service, collection: Any, status: JobStatus) -> JobOut:
    fields = asdict(status)
    names = service.display_names(collection, [each.path for each in status.skipped])
    fields["skipped"] = [
        SkippedOut(path=name, reason=each.reason)
        for name, each in zip(names, status.skipped, strict=True)
    ]
    return JobOut(**{key: fields[key] for key in JobOut.model_fields})


def _hit_out(service: Service, name: str, collection: str, hit: Hit) -> HitOut:
    return HitOut(
        item_id=hit.item_id,
        path=service.display_name(collection, hit.path),
        kind=hit.kind,  # type: ignore[arg-type]
        score=hit.score,
        confidence=hit.confidence,
        t_start=hit.t_start,
        t_end=hit.t_end,
        t_best=hit.t_best,
        taken=hit.taken,
        thumbnail=f"/collections/{name}/items/{hit.item_id}/thumbnail",
    )

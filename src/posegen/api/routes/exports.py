"""Exports of a generation's results: queue formats after the end (202; workers make them as
follow-up tasks, with progress on the generation's event stream), download one export, list
the formats. The archive by format is ``GET /generations/{id}/archive?formats=`` (files.py)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response

from posegen import exporting
from posegen.api import downloads
from posegen.api.deps import CurrentUser, EngineDep, PathId, SettingsDep
from posegen.api.openapi import problems
from posegen.api.routes.generations import GenerationDep
from posegen.api.schemas import ExportQueued, ExportsAccepted, ExportsRequest
from posegen.config import Settings
from posegen.db.models import TERMINAL_STATUSES
from posegen.exceptions import Conflict
from posegen.exporting import records

router = APIRouter(tags=["exports"])

FormatPath = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]


@router.get("/exports/formats")
def list_formats(user: CurrentUser, settings: SettingsDep) -> list[dict[str, Any]]:
    """The export formats this deployment offers (built-in table plus the operator's): name,
    label, size (null: the result's own), file type, quality, dpi (print), fill and fit."""
    return [_camel(fmt.to_json()) for _, fmt in sorted(exporting.formats(settings).items())]


def _camel(values: dict[str, Any]) -> dict[str, Any]:
    def camel(key: str) -> str:
        head, *rest = key.split("_")
        return head + "".join(p.title() for p in rest)

    return {camel(k): v for k, v in values.items()}


@router.post(
    "/generations/{generation_id}/exports",
    status_code=202,
    response_model=ExportsAccepted,
    responses=problems(404, 409, 422),
)
def request_exports(
    body: ExportsRequest,
    request: Request,
    generation: GenerationDep,
    engine: EngineDep,
    settings: SettingsDep,
) -> ExportsAccepted:
    """Queue exports of a finished generation's completed results, one task per format that
    some result lacks. Idempotent: a format that exists or is queued is left as it is."""
    if generation.status not in TERMINAL_STATUSES:
        raise Conflict(
            f"generation {generation.id} is {generation.status.value}: exports are made once it "
            "has ended (or ask for them with exportFormats when submitting)",
            kind="generation-active",
        )
    if generation.completed < 1:
        raise Conflict(f"generation {generation.id} has no completed results", kind="no-results")
    done = exporting.request(engine, settings, generation.id, body.formats)
    return ExportsAccepted(
        generation_id=generation.id,
        formats=[
            ExportQueued(format=r.format, status=r.status, queued=r.queued, task_id=r.task_id)
            for r in done
        ],
        events_url=request.url_for("generation_events", generation_id=generation.id).path,
    )


#: What the two export downloads answer (an original's and a variant's).
_FILE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The exported file.", "content": {"image/jpeg": {}, "image/png": {}}},
    304: {"description": "Not modified: `If-None-Match` named the current `ETag`."},
    307: {"description": "Redirect to a presigned URL (``POSEGEN_S3_DOWNLOAD=redirect``)."},
    **problems(404, 503),
}


@router.get(
    "/generations/{generation_id}/results/{result_id}/exports/{fmt}",
    name="result_export",
    responses=_FILE_RESPONSES,
)
def result_export(
    request: Request,
    generation: GenerationDep,
    result_id: PathId,
    fmt: FormatPath,
    engine: EngineDep,
    settings: SettingsDep,
) -> Response:
    """Download one result's export in one format (owner or admin; 404 when not made)."""
    row = records.one(engine, generation.id, result_id, fmt)
    return _send(request, settings, row, f"generation-{generation.id}-{row.variation_key}-{fmt}")


@router.get(
    "/generations/{generation_id}/results/{result_id}/variants/{variant_id}/exports/{fmt}",
    name="variant_export",
    responses=_FILE_RESPONSES,
)
def variant_export(
    request: Request,
    generation: GenerationDep,
    result_id: PathId,
    variant_id: PathId,
    fmt: FormatPath,
    engine: EngineDep,
    settings: SettingsDep,
) -> Response:
    """Download one background variant's export in one format (owner or admin; 404 when not
    made). Variants are exported in the formats their result is."""
    row = records.one(engine, generation.id, result_id, fmt, variant_id)
    stem = f"generation-{generation.id}-{row.variation_key}-{row.variant_key}-{fmt}"
    return _send(request, settings, row, stem)


def _send(request: Request, settings: Settings, row: records.ExportRow, stem: str) -> Response:
    """One export file, downloaded as ``stem`` plus its own extension."""
    ext = row.file.path.rsplit(".", 1)[-1]
    return downloads.stored_file(
        request, settings, row.file.path, max_age=3600, filename=f"{stem}.{ext}"
    )

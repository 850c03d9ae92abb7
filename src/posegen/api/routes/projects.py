"""Projects (owner only): a subject image by URL or upload, then generations from it."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from posegen import projects, uploads
from posegen.api import forms
from posegen.api.deps import CurrentUser, EngineDep, PathId, SettingsDep
from posegen.api.openapi import problems
from posegen.api.routes.files import remove_results
from posegen.api.schemas import Page, ProjectCreate, ProjectOut, ProjectUpdate
from posegen.db.models import ProjectStatus
from posegen.exceptions import InvalidInput

router = APIRouter(prefix="/projects", tags=["projects"])

SUBJECT_HELP = "Subject image (PNG, JPEG or WebP); stored re-encoded as PNG."


def project_out(p: projects.ProjectView) -> ProjectOut:
    return ProjectOut.model_validate(p, from_attributes=True)


async def _subject(settings: SettingsDep, url: str | None, upload: bytes | None) -> bytes | None:
    if url is not None and upload is not None:
        raise InvalidInput(
            "give a subject upload or subjectImageUrl, not both", kind="two-subjects"
        )
    if upload is None:
        return None
    return await run_in_threadpool(uploads.validated_png, settings, upload)


async def _store_subject(settings: SettingsDep, project_id: int, png: bytes) -> str:
    return await run_in_threadpool(
        uploads.store, settings, uploads.SUBJECTS, f"project-{project_id}", png
    )


@router.post(
    "",
    status_code=201,
    response_model=ProjectOut,
    responses=problems(429),
    openapi_extra=forms.request_body(ProjectCreate, "subject", SUBJECT_HELP),
)
async def create_project(
    request: Request, user: CurrentUser, engine: EngineDep, settings: SettingsDep
) -> ProjectOut:
    """Create a project: JSON `{name, subjectImageUrl?}` or multipart `name` + `subject` file."""
    body, upload = await forms.read_body(request, ProjectCreate, settings, "subject")
    url = projects.check_image_url(body.subject_image_url) if body.subject_image_url else None
    png = await _subject(settings, url, upload)
    project = await run_in_threadpool(
        partial(projects.create, max_projects=settings.max_projects_per_user),
        engine,
        user.id,
        body.name,
        url,
    )
    if png is not None:
        try:
            path = await _store_subject(settings, project.id, png)
            project = await run_in_threadpool(
                lambda: projects.update_fields(engine, project.id, user.id, subject_image_url=path)
            )
        except BaseException:
            await run_in_threadpool(projects.remove, engine, project.id, user.id)
            raise
    return project_out(project)


@router.get("", response_model=Page[ProjectOut])
def list_projects(
    user: CurrentUser,
    engine: EngineDep,
    status: ProjectStatus | None = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Page[ProjectOut]:
    """The caller's projects, newest first."""
    page = projects.list_for(engine, user.id, status=status, cursor=cursor, limit=limit)
    return Page[ProjectOut](
        items=[project_out(p) for p in page.items], next_cursor=page.next_cursor
    )


@router.get("/{project_id}", response_model=ProjectOut, responses=problems(404))
def get_project(project_id: PathId, user: CurrentUser, engine: EngineDep) -> ProjectOut:
    return project_out(projects.get(engine, project_id, user.id))


@router.patch(
    "/{project_id}",
    response_model=ProjectOut,
    responses=problems(404),
    openapi_extra=forms.request_body(ProjectUpdate, "subject", SUBJECT_HELP),
)
async def update_project(
    request: Request,
    project_id: PathId,
    user: CurrentUser,
    engine: EngineDep,
    settings: SettingsDep,
) -> ProjectOut:
    """Rename, or replace the subject (by URL or upload); only the fields given change."""
    body, upload = await forms.read_body(request, ProjectUpdate, settings, "subject")
    values = body.model_dump(exclude_unset=True)
    if values.get("subject_image_url") is not None:
        values["subject_image_url"] = projects.check_image_url(values["subject_image_url"])
    if values.get("name", "") is None:
        raise InvalidInput("name cannot be null", kind="invalid-name")
    await run_in_threadpool(projects.get, engine, project_id, user.id)
    png = await _subject(settings, values.get("subject_image_url"), upload)
    if png is not None:
        values["subject_image_url"] = await _store_subject(settings, project_id, png)
    project = await run_in_threadpool(
        lambda: projects.update_fields(engine, project_id, user.id, **values)
    )
    return project_out(project)


@router.post("/{project_id}/archive", response_model=ProjectOut, responses=problems(404, 409))
def archive_project(project_id: PathId, user: CurrentUser, engine: EngineDep) -> ProjectOut:
    """Archive (refused with 409 while a generation of the project is pending or running)."""
    return project_out(projects.archive(engine, project_id, user.id))


@router.delete("/{project_id}", status_code=204, responses=problems(404, 409))
def delete_project(
    project_id: PathId, user: CurrentUser, engine: EngineDep, settings: SettingsDep
) -> Response:
    """Delete the project, its generations and their files (refused while one is active)."""
    project, generation_ids = projects.remove(engine, project_id, user.id)
    uploads.remove(settings, project.subject_image_url, uploads.SUBJECTS)
    remove_results(settings, generation_ids)
    return Response(status_code=204)

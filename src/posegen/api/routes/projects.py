"""Projects (owner only): a subject image by URL or upload, then generations from it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from posegen import projects, uploads
from posegen.api import forms
from posegen.api.deps import CurrentUser, EngineDep, PathId, SettingsDep
from posegen.api.openapi import problems
from posegen.api.routes.files import remove_results
from posegen.api.schemas import Page, ProjectCreate, ProjectOut, ProjectUpdate
from posegen.db.models import ProjectStatus
from posegen.exceptions import InvalidInput
from posegen.vision.subjects import detect_quietly

router = APIRouter(prefix="/projects", tags=["projects"])

SUBJECT_HELP = (
    "Subject image (PNG, JPEG or WebP): stored as one of your uploads and attached by id."
)


def project_out(p: projects.ProjectView) -> ProjectOut:
    return ProjectOut.model_validate(p, from_attributes=True)


async def _subject_upload(
    engine: EngineDep,
    settings: SettingsDep,
    user_id: int,
    values: dict[str, Any],
    upload: bytes | None,
) -> None:
    """A multipart ``subject`` file becomes an owned upload; its id goes into ``values``."""
    if upload is None:
        return
    if values.get("subject_image_url") is not None or values.get("subject_upload_id") is not None:
        raise InvalidInput(
            "give one subject: a file, subjectImageUrl or subjectUploadId", kind="two-subjects"
        )
    stored = await run_in_threadpool(uploads.store, engine, settings, user_id, upload)
    values["subject_upload_id"] = stored.id


def _detect_subject(
    background: BackgroundTasks, engine: EngineDep, settings: SettingsDep, upload_id: int | None
) -> None:
    """Find the person in a newly attached subject once, after the answer is sent (vision)."""
    if upload_id is not None and settings.vision_detect_subjects:
        background.add_task(detect_quietly, engine, settings, upload_id)


@router.post(
    "",
    status_code=201,
    response_model=ProjectOut,
    responses=problems(429),
    openapi_extra=forms.request_body(ProjectCreate, "subject", SUBJECT_HELP),
)
async def create_project(
    request: Request,
    user: CurrentUser,
    engine: EngineDep,
    settings: SettingsDep,
    background: BackgroundTasks,
) -> ProjectOut:
    """Create a project: JSON `{name, subjectImageUrl? | subjectUploadId?}`, or multipart `name`
    and a `subject` file (stored as your upload)."""
    body, upload = await forms.read_body(request, ProjectCreate, settings, "subject")
    values = body.model_dump(exclude={"name"})
    projects.clean_name(body.name)  # before a file is stored for a project that cannot exist
    if values["subject_image_url"] is not None:
        values["subject_image_url"] = projects.check_image_url(values["subject_image_url"])
    await _subject_upload(engine, settings, user.id, values, upload)
    project = await run_in_threadpool(
        lambda: projects.create(
            engine,
            user.id,
            body.name,
            values["subject_image_url"],
            values["subject_upload_id"],
            max_projects=settings.max_projects_per_user,
        )
    )
    _detect_subject(background, engine, settings, project.subject_upload_id)
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
    background: BackgroundTasks,
) -> ProjectOut:
    """Rename, or replace the subject (URL, upload id or file); only the fields given change.
    A replaced upload is removed if nothing else uses it."""
    body, upload = await forms.read_body(request, ProjectUpdate, settings, "subject")
    values = body.model_dump(exclude_unset=True)
    if values.get("subject_image_url") is not None:
        values["subject_image_url"] = projects.check_image_url(values["subject_image_url"])
    if values.get("name", "") is None:
        raise InvalidInput("name cannot be null", kind="invalid-name")
    before = await run_in_threadpool(projects.get, engine, project_id, user.id)
    await _subject_upload(engine, settings, user.id, values, upload)
    project = await run_in_threadpool(
        lambda: projects.update_fields(engine, project_id, user.id, **values)
    )
    if before.subject_upload_id not in (None, project.subject_upload_id):
        await run_in_threadpool(uploads.release, engine, settings, before.subject_upload_id)
    if project.subject_upload_id != before.subject_upload_id:
        _detect_subject(background, engine, settings, project.subject_upload_id)
    return project_out(project)


@router.post("/{project_id}/archive", response_model=ProjectOut, responses=problems(404, 409))
def archive_project(project_id: PathId, user: CurrentUser, engine: EngineDep) -> ProjectOut:
    """Archive (refused with 409 while a generation of the project is pending or running)."""
    return project_out(projects.archive(engine, project_id, user.id))


@router.delete("/{project_id}", status_code=204, responses=problems(404, 409))
def delete_project(
    project_id: PathId, user: CurrentUser, engine: EngineDep, settings: SettingsDep
) -> Response:
    """Delete the project, its generations and their files (refused while one is active); its
    subject upload too when no other project or pose uses it."""
    project, generation_ids = projects.remove(engine, project_id, user.id)
    uploads.release(engine, settings, project.subject_upload_id)
    remove_results(settings, generation_ids)
    return Response(status_code=204)

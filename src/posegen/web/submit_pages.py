"""Starting work from the browser: the new-generation form and creating a project.

The form is checked against the same settings as the API (poses per request, variations, total
poses, prompt length, per-user submission limits) and enqueued through :func:`posegen.queue.submit`
with an idempotency key minted when the form was drawn, so a double submit makes one generation.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.responses import RedirectResponse, Response

from posegen import catalog, credits, exporting, library, pagination, projects, queue, uploads
from posegen.db.models import GenerationType, ProjectStatus
from posegen.exceptions import InvalidInput, NotFound, PosegenError
from posegen.library import premium
from posegen.web.context import (
    PREFIX,
    Ctx,
    PageRoute,
    SignedIn,
    WebContext,
    check_csrf,
    credits_in_play,
    render,
)
from posegen.web.generation_pages import export_format_names
from posegen.web.session import WebSession

router = APIRouter(route_class=PageRoute, include_in_schema=False)

PROMPT_MIN, PROMPT_MAX = 3, 500
FORM_LIMITS = {"max_files": 1, "max_fields": 1000, "max_part_size": 64 * 1024}


@dataclass
class FormState:
    """What the user entered, to redraw the form after an error."""

    project_id: int | None = None
    mode: str = "library"
    pose_ids: list[int] = field(default_factory=list)
    variations: int = 1
    prompt: str = ""
    #: Export formats made with each pose (names from the exports table).
    export_formats: list[str] = field(default_factory=list)
    token: str = field(default_factory=lambda: secrets.token_urlsafe(16))


def _int(value: Any, name: str) -> int:
    try:
        return int(str(value).strip())
    except ValueError as exc:
        raise InvalidInput(f"{name} must be a whole number") from exc


def read_form(form: FormData) -> FormState:
    """Parse the form; unparsable numbers are :class:`InvalidInput` naming the field."""
    state = FormState()
    raw_project = form.get("project_id")
    state.project_id = _int(raw_project, "project") if raw_project else None
    state.mode = "text" if form.get("mode") == "text" else "library"
    state.pose_ids = [_int(v, "pose") for v in form.getlist("pose_id")]
    state.variations = _int(form.get("variations") or "1", "variations")
    state.export_formats = [str(v) for v in form.getlist("export_format") if isinstance(v, str)]
    prompt = form.get("prompt")
    state.prompt = prompt.strip() if isinstance(prompt, str) else ""
    token = form.get("submission")
    if isinstance(token, str) and 8 <= len(token) <= 64:
        state.token = token
    return state


def build_request(
    ctx: WebContext, session: WebSession, state: FormState
) -> queue.GenerationRequest:
    """Check the form against the configured limits and the user's projects and poses."""
    assert session.account is not None
    s = ctx.settings
    if state.project_id is None:
        raise InvalidInput("pick a project (or create one first)")
    try:
        project = projects.get(ctx.engine, state.project_id, session.account.id)
    except NotFound as exc:
        raise InvalidInput("pick one of your projects") from exc
    if project.status != ProjectStatus.ACTIVE:
        raise InvalidInput(f"project {project.name!r} is archived")
    if not 1 <= state.variations <= s.max_variations:
        raise InvalidInput(f"variations must be between 1 and {s.max_variations}")
    if state.prompt and not PROMPT_MIN <= len(state.prompt) <= PROMPT_MAX:
        raise InvalidInput(f"a prompt needs {PROMPT_MIN}-{PROMPT_MAX} characters")
    if state.mode == "text":
        if not state.prompt:
            raise InvalidInput("describe the pose in the prompt")
        pose_ids: list[int] = []
        total = state.variations
    else:
        pose_ids = list(dict.fromkeys(state.pose_ids))
        if not pose_ids:
            raise InvalidInput("pick at least one pose")
        if len(pose_ids) > s.max_poses_per_request:
            raise InvalidInput(f"at most {s.max_poses_per_request} poses per generation")
        named = catalog.check_poses(
            ctx.engine, pose_ids, include_private=session.is_admin, viewer_id=session.account.id
        )
        if named.missing:
            raise InvalidInput(f"unknown poses: {', '.join(map(str, named.missing))}")
        premium.check(ctx.engine, s, named.premium, session.account.id, admin=session.is_admin)
        total = len(pose_ids) * state.variations
    if total > s.max_total_poses:
        raise InvalidInput(f"{total} images is over the limit of {s.max_total_poses}")
    body = {
        "project": project.id,
        "mode": state.mode,
        "poses": pose_ids,
        "variations": state.variations,
        "prompt": state.prompt or None,
    }
    formats = exporting.check(s, state.export_formats) if state.export_formats else None
    if formats:
        body["exports"] = formats
    return queue.GenerationRequest(
        user_id=session.account.id,
        project_id=project.id,
        type=GenerationType.TEXT if state.mode == "text" else GenerationType.LIBRARY,
        pose_ids=pose_ids,
        variations=state.variations,
        prompt=state.prompt or None,
        width=s.default_width,
        height=s.default_height,
        idempotency_key=f"web-{state.token}",
        export_formats=tuple(formats) if formats else None,
        request_hash=hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest(),
    )


def submit(ctx: WebContext, session: WebSession, state: FormState) -> int:
    """Validate, apply the per-user limits, enqueue; returns the generation id."""
    assert session.account is not None
    req = build_request(ctx, session, state)
    limits = queue.SubmitLimits.from_settings(ctx.settings)
    return queue.submit(ctx.engine, ctx.settings, req, limits).generation_id


def form_values(ctx: WebContext, session: WebSession, category: str | None) -> dict[str, Any]:
    """The user's active projects, the categories and the poses to pick from."""
    assert session.account is not None
    mine = projects.list_for(
        ctx.engine, session.account.id, status=ProjectStatus.ACTIVE, limit=pagination.MAX_LIMIT
    ).items
    cats = catalog.list_categories(ctx.engine, include_private=session.is_admin)
    poses = catalog.list_poses(
        ctx.engine,
        include_private=session.is_admin,
        category=category or None,
        limit=pagination.MAX_LIMIT,
    ).items
    values: dict[str, Any] = {
        "projects": mine,
        "categories": cats,
        "poses": poses,
        # The user's private poses (posegen.library.private): theirs to generate with.
        "my_poses": library.list_private_poses(
            ctx.engine, session.account.id, limit=pagination.MAX_LIMIT
        ).items,
        "category": category or "",
        "max_variations": ctx.settings.max_variations,
        "export_formats": export_format_names(ctx),
    }
    standing = credits.plans.standing(ctx.engine, ctx.settings, session.account.id)
    if standing.plan.is_quota:
        # A quota plan's generations cost no credits: the form says what is left today.
        values["quota_left"] = standing.left_today
        values["quota_daily"] = standing.plan.daily_poses
    elif credits_in_play(ctx.settings):
        # The cost before submitting, from the one pricing function (what submit charges);
        # with free generations the form does not mention credits.
        values["credits_per_pose"] = credits.pricing.quote(ctx.settings, 1).per_pose
        values["credit_balance"] = credits.balance(ctx.engine, session.account.id)
    return values


def _draw(
    request: Request,
    ctx: WebContext,
    session: WebSession,
    state: FormState,
    error: str | None = None,
    status: int = 200,
    category: str | None = None,
) -> Response:
    values = form_values(ctx, session, category)
    values.update({"form": state, "error": error})
    return render(request, "new_generation.html", values, status=status, session=session)


@router.get("/generations/new", name="web-new-generation")
def new_generation(
    request: Request,
    ctx: Ctx,
    session: SignedIn,
    project: str | None = None,
    category: str | None = None,
) -> Response:
    """The form: pick a project, poses (or describe one), and variations."""
    state = FormState(project_id=_int(project, "project") if project else None)
    return _draw(request, ctx, session, state, category=category)


@router.post("/generations")
async def create_generation(request: Request, ctx: Ctx, session: SignedIn) -> Response:
    """Submit the form; on success go to the new generation's page."""
    form = await request.form(**FORM_LIMITS)
    check_csrf(ctx, session, dict(form))
    try:
        state = read_form(form)
    except InvalidInput as exc:
        return await run_in_threadpool(_draw, request, ctx, session, FormState(), exc.message, 422)
    try:
        gen_id = await run_in_threadpool(submit, ctx, session, state)
    except PosegenError as exc:
        if exc.http_status >= 500:
            raise
        return await run_in_threadpool(
            _draw, request, ctx, session, state, exc.message, exc.http_status
        )
    return RedirectResponse(f"{PREFIX}/generations/{gen_id}?notice=submitted", status_code=303)


def create_project(ctx: WebContext, session: WebSession, name: str, upload: bytes | None) -> int:
    """A project with an optional subject image, stored as the user's own upload (as in the API)."""
    assert session.account is not None
    user_id = session.account.id
    projects.clean_name(name)  # before a file is stored for a project that cannot exist
    upload_id = uploads.store(ctx.engine, ctx.settings, user_id, upload).id if upload else None
    return projects.create(
        ctx.engine, user_id, name, None, upload_id, max_projects=ctx.settings.max_projects_per_user
    ).id


@router.post("/projects", name="web-create-project")
async def new_project(request: Request, ctx: Ctx, session: SignedIn) -> Response:
    """Create a project from the form (name + optional subject image file)."""
    form = await request.form(**FORM_LIMITS)
    check_csrf(ctx, session, dict(form))
    name = form.get("name")
    subject = form.get("subject")
    upload: bytes | None = None
    if isinstance(subject, UploadFile) and subject.filename:
        upload = await subject.read(ctx.settings.upload_max_bytes + 1)
    await form.close()
    try:
        project_id = await run_in_threadpool(
            create_project, ctx, session, name if isinstance(name, str) else "", upload
        )
    except PosegenError as exc:
        if exc.http_status >= 500:
            raise
        message = f"Project not created: {exc.message}"
        return await run_in_threadpool(
            _draw, request, ctx, session, FormState(), message, exc.http_status
        )
    return RedirectResponse(f"{PREFIX}/generations/new?project={project_id}", status_code=303)

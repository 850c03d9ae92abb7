"""Dashboard pages of the community: "My poses", pose requests with voting, the admin review
queue. Server-rendered forms with the session's CSRF token; every action goes through the same
core functions as the API (:mod:`posegen.library.private`, :mod:`posegen.community`)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.responses import RedirectResponse, Response

from posegen import catalog, community, library, pagination, uploads, vision
from posegen.db.models import ACTIVE_REQUEST_STATUSES, RequestStatus
from posegen.exceptions import InvalidInput, PosegenError
from posegen.web.context import (
    PREFIX,
    Admin,
    Ctx,
    PageRoute,
    SignedIn,
    WebContext,
    check_csrf,
    form_str,
    render,
)
from posegen.web.session import WebSession

router = APIRouter(route_class=PageRoute, include_in_schema=False)

FORM_LIMITS = {"max_files": 1, "max_fields": 20, "max_part_size": 256 * 1024}
#: The "add a pose" form has two file inputs (a map image, a photo); a browser sends both.
POSE_FORM_LIMITS = {**FORM_LIMITS, "max_files": 2}
PAGE_SIZE = 50
NOTICES = {
    "pose-saved": "Pose saved.",
    "pose-deleted": "Pose deleted.",
    "request-made": "Request sent. Others can vote for it now.",
    "voted": "Vote counted.",
    "unvoted": "Vote taken back.",
    "reviewed": "Request updated.",
}


def _user_id(session: WebSession) -> int:
    assert session.account is not None
    return session.account.id


async def _form(
    request: Request, ctx: WebContext, session: WebSession, limits: dict[str, int] = FORM_LIMITS
) -> FormData:
    form = await request.form(**limits)
    try:
        check_csrf(ctx, session, dict(form))
    except BaseException:
        await form.close()  # a refused form's files are not left to the garbage collector
        raise
    return form


async def _file(form: FormData, name: str, ctx: WebContext) -> bytes | None:
    value = form.get(name)
    if isinstance(value, UploadFile) and value.filename:
        data = await value.read(ctx.settings.upload_max_bytes + 1)
        if data:
            return data
    return None


def _notice(request: Request) -> str | None:
    return NOTICES.get(request.query_params.get("notice") or "")


# --- my poses --------------------------------------------------------------------------------


def _my_poses(ctx: WebContext, user_id: int, cursor: str | None) -> dict[str, Any]:
    page = library.list_private_poses(ctx.engine, user_id, cursor=cursor, limit=PAGE_SIZE)
    cats = catalog.list_categories(ctx.engine, include_private=False)
    return {"poses": page.items, "next_cursor": page.next_cursor, "categories": cats}


@router.get("/me/poses", name="web-my-poses")
async def my_poses(
    request: Request, ctx: Ctx, session: SignedIn, cursor: str | None = None
) -> Response:
    """Your private poses, and the form to add one (keypoints JSON, a map image or a photo)."""
    values = await run_in_threadpool(_my_poses, ctx, _user_id(session), cursor)
    values.update({"notice": _notice(request), "cursor": cursor})
    return render(request, "my_poses.html", values, session=session)


def _create_pose(
    ctx: WebContext,
    user_id: int,
    fields: dict[str, str],
    map_file: bytes | None,
    photo: bytes | None = None,
) -> None:
    text = fields.get("keypoints", "").strip()
    keypoints: Any = None
    if text:
        try:
            keypoints = json.loads(text)
        except ValueError as exc:
            raise InvalidInput("the keypoints are not valid JSON", kind="invalid-pose") from exc
    if sum(x is not None for x in (keypoints, map_file, photo)) > 1:
        raise InvalidInput("give keypoints, a map image or a photo: only one", kind="two-maps")
    if photo is not None:
        vision.create_private_pose_from_photo(
            ctx.engine,
            ctx.settings,
            user_id,
            photo,
            fields.get("name", ""),
            description=fields.get("description", ""),
            category=fields.get("category") or None,
        )
        return
    upload_id = None
    if map_file is not None:
        upload_id = uploads.store(ctx.engine, ctx.settings, user_id, map_file).id
    library.create_private_pose(
        ctx.engine,
        user_id,
        keypoints,
        fields.get("name", ""),
        description=fields.get("description", ""),
        category=fields.get("category") or None,
        map_upload_id=upload_id,
    )


@router.post("/me/poses", name="web-create-my-pose")
async def create_my_pose(request: Request, ctx: Ctx, session: SignedIn) -> Response:
    form = await _form(request, ctx, session, POSE_FORM_LIMITS)
    fields = {k: form_str(dict(form), k) or "" for k in ("name", "description", "category")}
    fields["keypoints"] = form_str(dict(form), "keypoints") or ""
    map_file = await _file(form, "map", ctx)
    photo = await _file(form, "photo", ctx)
    await form.close()
    user_id = _user_id(session)
    try:
        await run_in_threadpool(_create_pose, ctx, user_id, fields, map_file, photo)
    except PosegenError as exc:
        # A server-side error shows on the form only when it has words for users (vision).
        public = getattr(exc, "public_detail", None)
        if exc.http_status >= 500 and public is None:
            raise
        values = await run_in_threadpool(_my_poses, ctx, user_id, None)
        values.update({"error": public or exc.message, "form": fields})
        return render(request, "my_poses.html", values, status=exc.http_status, session=session)
    return RedirectResponse(f"{PREFIX}/me/poses?notice=pose-saved", status_code=303)


@router.post("/me/poses/{pose_id:int}/delete", name="web-delete-my-pose")
async def delete_my_pose(request: Request, ctx: Ctx, session: SignedIn, pose_id: int) -> Response:
    await _form(request, ctx, session)

    def delete() -> None:
        upload_id = library.delete_private_pose(ctx.engine, _user_id(session), pose_id)
        uploads.release(ctx.engine, ctx.settings, upload_id)

    await run_in_threadpool(delete)
    return RedirectResponse(f"{PREFIX}/me/poses?notice=pose-deleted", status_code=303)


# --- requests --------------------------------------------------------------------------------


def _status(value: str | None) -> RequestStatus | None:
    if not value:
        return None
    try:
        return RequestStatus(value)
    except ValueError as exc:
        raise InvalidInput(f"unknown status {value!r}") from exc


def _requests(
    ctx: WebContext, user_id: int, status: str, sort: str, cursor: str | None
) -> dict[str, Any]:
    newest = sort == "newest"
    page = community.list_requests(
        ctx.engine,
        user_id,
        status=_status(status),
        sort="newest" if newest else "votes",
        cursor=cursor,
        limit=PAGE_SIZE,
    )
    events = community.list_events_for_requester(ctx.engine, user_id, limit=10).items
    return {
        "requests": page.items,
        "next_cursor": page.next_cursor,
        "events": [(e, community.event_sentence(e)) for e in events],
        "categories": catalog.list_categories(ctx.engine, include_private=False),
        "statuses": [s.value for s in RequestStatus],
        "status": status,
        "sort": "newest" if newest else "votes",
        "cursor": cursor,
        "me": user_id,
        "active": {s.value for s in ACTIVE_REQUEST_STATUSES},
    }


@router.get("/requests", name="web-requests")
async def requests_page(
    request: Request,
    ctx: Ctx,
    session: SignedIn,
    status: str = "",
    sort: str = "votes",
    cursor: str | None = None,
) -> Response:
    """Everyone's requests (most votes first), updates on yours, and the form for a new one."""
    values = await run_in_threadpool(_requests, ctx, _user_id(session), status, sort, cursor)
    values["notice"] = _notice(request)
    return render(request, "requests.html", values, session=session)


def _create_request(
    ctx: WebContext, user_id: int, fields: dict[str, str], reference: bytes | None
) -> int:
    upload_id = None
    if reference is not None:
        upload_id = uploads.store(ctx.engine, ctx.settings, user_id, reference).id
    return community.create_request(
        ctx.engine,
        user_id,
        fields.get("name", ""),
        description=fields.get("description", ""),
        category=fields.get("category") or None,
        use_case=fields.get("use_case", ""),
        reference_upload_id=upload_id,
    ).id


@router.post("/requests", name="web-create-request")
async def create_request(request: Request, ctx: Ctx, session: SignedIn) -> Response:
    form = await _form(request, ctx, session)
    names = ("name", "description", "category", "use_case")
    fields = {k: form_str(dict(form), k) or "" for k in names}
    reference = await _file(form, "reference", ctx)
    await form.close()
    user_id = _user_id(session)
    try:
        request_id = await run_in_threadpool(_create_request, ctx, user_id, fields, reference)
    except PosegenError as exc:
        if exc.http_status >= 500:
            raise
        values = await run_in_threadpool(_requests, ctx, user_id, "", "votes", None)
        values.update({"error": exc.message, "form": fields})
        return render(request, "requests.html", values, status=exc.http_status, session=session)
    return RedirectResponse(f"{PREFIX}/requests/{request_id}?notice=request-made", 303)


@router.get("/requests/{request_id:int}", name="web-request")
async def request_page(request: Request, ctx: Ctx, session: SignedIn, request_id: int) -> Response:
    """One request, its reference image and its history."""

    def load() -> dict[str, Any]:
        r = community.get_request(ctx.engine, request_id, _user_id(session))
        events = community.list_events(ctx.engine, request_id)
        return {"r": r, "events": [(e, community.event_sentence(e)) for e in events]}

    values = await run_in_threadpool(load)
    values.update(
        {
            "notice": _notice(request),
            "me": _user_id(session),
            "active": {s.value for s in ACTIVE_REQUEST_STATUSES},
        }
    )
    return render(request, "request.html", values, session=session)


@router.get("/requests/{request_id:int}/reference", name="web-request-reference")
def request_reference(ctx: Ctx, session: SignedIn, request_id: int) -> Response:
    view, data = community.reference_image(ctx.engine, ctx.settings, request_id)
    return Response(data, media_type=view.content_type, headers={"Cache-Control": "private"})


def _back(form: FormData, request_id: int, notice: str) -> str:
    target = form_str(dict(form), "back")
    # Only our own pages: a form field never sends the browser elsewhere.
    if target not in ("requests", "admin"):
        return f"{PREFIX}/requests/{request_id}?notice={notice}"
    page = "requests" if target == "requests" else "admin/requests"
    return f"{PREFIX}/{page}?notice={notice}"


@router.post("/requests/{request_id:int}/vote", name="web-vote")
async def vote(request: Request, ctx: Ctx, session: SignedIn, request_id: int) -> Response:
    form = await _form(request, ctx, session)
    await run_in_threadpool(community.vote, ctx.engine, request_id, _user_id(session))
    return RedirectResponse(_back(form, request_id, "voted"), status_code=303)


@router.post("/requests/{request_id:int}/unvote", name="web-unvote")
async def unvote(request: Request, ctx: Ctx, session: SignedIn, request_id: int) -> Response:
    form = await _form(request, ctx, session)
    await run_in_threadpool(community.unvote, ctx.engine, request_id, _user_id(session))
    return RedirectResponse(_back(form, request_id, "unvoted"), status_code=303)


# --- admin review queue ----------------------------------------------------------------------


@router.get("/admin/requests", name="web-review-queue")
async def review_queue(request: Request, ctx: Ctx, session: Admin) -> Response:
    """Unfinished requests, most votes first, with approve / reject / start / complete."""

    def load() -> dict[str, Any]:
        user_id = _user_id(session)
        rows = []
        for status in (RequestStatus.OPEN, RequestStatus.APPROVED, RequestStatus.IN_PROGRESS):
            rows += community.list_requests(
                ctx.engine, user_id, status=status, limit=pagination.MAX_LIMIT
            ).items
        rows.sort(key=lambda r: (-r.vote_count, -r.id))
        return {"requests": rows, "actions": community.ACTIONS}

    values = await run_in_threadpool(load)
    values["notice"] = _notice(request)
    return render(request, "review_queue.html", values, session=session)


@router.post("/admin/requests/{request_id:int}/{action}", name="web-review")
async def review(
    request: Request, ctx: Ctx, session: Admin, request_id: int, action: str
) -> Response:
    form = await _form(request, ctx, session)
    note = form_str(dict(form), "note") or None
    pose = (form_str(dict(form), "pose") or "").strip() or None
    await run_in_threadpool(
        lambda: community.review(
            ctx.engine, request_id, action, actor_id=_user_id(session), note=note, pose=pose
        )
    )
    return RedirectResponse(_back(form, request_id, "reviewed"), status_code=303)

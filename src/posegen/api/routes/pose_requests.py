"""Community pose requests: anyone signed in lists, reads, makes and votes; admins review.

Wrong-state reviews are 409 ``invalid-transition``; voting on one's own request 409
``own-request``, on a finished one 409 ``request-closed``; a second unfinished request of the
same name 409 ``duplicate-request``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from posegen import community, uploads
from posegen.api import forms
from posegen.api.deps import AdminUser, CurrentUser, EngineDep, PathId, SettingsDep
from posegen.api.openapi import problems
from posegen.api.schemas import Page
from posegen.api.schemas_community import (
    CompleteBody,
    PoseRequestCreate,
    PoseRequestDetail,
    PoseRequestOut,
    RejectBody,
    RequestEventOut,
    RequestSort,
    ReviewNote,
    VoteOut,
)
from posegen.community import EventView, RequestView
from posegen.db.models import RequestStatus
from posegen.exceptions import InvalidInput

router = APIRouter(tags=["requests"])

Limit = Annotated[int, Query(ge=1, le=200, description="Page size.")]
Cursor = Annotated[str | None, Query(max_length=200, description="From `nextCursor`.")]


def request_out(request: Request, r: RequestView) -> PoseRequestOut:
    return PoseRequestOut(
        **{k: getattr(r, k) for k in PoseRequestOut.model_fields if k != "reference_url"},
        reference_url=request.url_for("request_reference", request_id=r.id).path
        if r.reference_upload_id is not None
        else None,
    )


def event_out(e: EventView) -> RequestEventOut:
    return RequestEventOut(
        id=e.id,
        request_id=e.request_id,
        request_name=e.request_name,
        status=e.status,
        note=e.note,
        pose_id=e.pose_id,
        message=community.event_sentence(e),
        created_at=e.created_at,
    )


@router.get("/requests", response_model=Page[PoseRequestOut])
def list_requests(
    request: Request,
    user: CurrentUser,
    engine: EngineDep,
    status: RequestStatus | None = None,
    category: Annotated[str | None, Query(max_length=64, description="Category slug.")] = None,
    mine: Annotated[bool, Query(description="Only your own requests.")] = False,
    sort: RequestSort = "votes",
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Page[PoseRequestOut]:
    """Requests, most votes first (`sort=votes`) or newest first (`sort=newest`)."""
    page = community.list_requests(
        engine,
        user.id,
        status=status,
        category=category,
        requester_id=user.id if mine else None,
        sort=sort,
        cursor=cursor,
        limit=limit,
    )
    return Page[PoseRequestOut](
        items=[request_out(request, r) for r in page.items], next_cursor=page.next_cursor
    )


@router.post(
    "/requests",
    status_code=201,
    response_model=PoseRequestOut,
    responses=problems(409, 413),
    openapi_extra=forms.request_body(
        PoseRequestCreate, "reference", "A reference image (stored as your upload)."
    ),
)
async def create_request(
    request: Request, user: CurrentUser, engine: EngineDep, settings: SettingsDep
) -> PoseRequestOut:
    """Ask for a pose the library lacks; a reference image is one of your uploads
    (`referenceUploadId`) or a multipart `reference` file."""
    body, upload = await forms.read_body(request, PoseRequestCreate, settings, "reference")
    upload_id = body.reference_upload_id
    if upload is not None:
        if upload_id is not None:
            raise InvalidInput("give one reference image", kind="two-references")
        upload_id = (await run_in_threadpool(uploads.store, engine, settings, user.id, upload)).id
    made = await run_in_threadpool(
        lambda: community.create_request(
            engine,
            user.id,
            body.name,
            description=body.description,
            category=body.category,
            use_case=body.use_case,
            reference_upload_id=upload_id,
        )
    )
    return request_out(request, made)


@router.get("/requests/{request_id}", response_model=PoseRequestDetail, responses=problems(404))
def get_request(
    request: Request, request_id: PathId, user: CurrentUser, engine: EngineDep
) -> PoseRequestDetail:
    """A request and its history."""
    r = community.get_request(engine, request_id, user.id)
    events = [event_out(e) for e in community.list_events(engine, request_id)]
    return PoseRequestDetail(**request_out(request, r).model_dump(), events=events)


@router.get(
    "/requests/{request_id}/reference",
    name="request_reference",
    response_class=Response,
    responses={200: {"content": {"image/*": {}}, "description": "The image."}, **problems(404)},
)
def request_reference(
    request_id: PathId, user: CurrentUser, engine: EngineDep, settings: SettingsDep
) -> Response:
    """The request's reference image (shown with the request to everyone signed in)."""
    view, data = community.reference_image(engine, settings, request_id)
    return Response(
        data,
        media_type=view.content_type,
        headers={"ETag": f'"{view.sha256}"', "Cache-Control": "private, max-age=300"},
    )


@router.post("/requests/{request_id}/vote", response_model=VoteOut, responses=problems(404, 409))
def vote(request_id: PathId, user: CurrentUser, engine: EngineDep) -> VoteOut:
    """Vote for someone else's unfinished request; voting again changes nothing."""
    count = community.vote(engine, request_id, user.id)
    return VoteOut(request_id=request_id, vote_count=count, voted=True)


@router.delete("/requests/{request_id}/vote", response_model=VoteOut, responses=problems(404))
def unvote(request_id: PathId, user: CurrentUser, engine: EngineDep) -> VoteOut:
    """Take your vote back (without one: nothing changes)."""
    count = community.unvote(engine, request_id, user.id)
    return VoteOut(request_id=request_id, vote_count=count, voted=False)


@router.get("/me/request-events", response_model=Page[RequestEventOut])
def my_request_events(
    user: CurrentUser, engine: EngineDep, cursor: Cursor = None, limit: Limit = 50
) -> Page[RequestEventOut]:
    """What happened to your requests (approved, started, completed, rejected), newest first."""
    page = community.list_events_for_requester(engine, user.id, cursor=cursor, limit=limit)
    return Page[RequestEventOut](
        items=[event_out(e) for e in page.items], next_cursor=page.next_cursor
    )


def _review(
    request: Request,
    engine: EngineDep,
    admin_id: int,
    request_id: int,
    action: str,
    note: str | None,
    pose: int | str | None = None,
) -> PoseRequestOut:
    done = community.review(engine, request_id, action, actor_id=admin_id, note=note, pose=pose)
    return request_out(request, done)


_ADMIN = {"response_model": PoseRequestOut, "responses": problems(404, 409)}


@router.post("/admin/requests/{request_id}/approve", **_ADMIN)  # type: ignore[arg-type]
def approve(
    request: Request, request_id: PathId, admin: AdminUser, engine: EngineDep, body: ReviewNote
) -> PoseRequestOut:
    """Approve an open request (admin), with an optional note."""
    return _review(request, engine, admin.id, request_id, "approve", body.note)


@router.post("/admin/requests/{request_id}/reject", **_ADMIN)  # type: ignore[arg-type]
def reject(
    request: Request, request_id: PathId, admin: AdminUser, engine: EngineDep, body: RejectBody
) -> PoseRequestOut:
    """Reject an unfinished request (admin); the note says why."""
    return _review(request, engine, admin.id, request_id, "reject", body.note)


@router.post("/admin/requests/{request_id}/start", **_ADMIN)  # type: ignore[arg-type]
def start(
    request: Request, request_id: PathId, admin: AdminUser, engine: EngineDep, body: ReviewNote
) -> PoseRequestOut:
    """Mark an open or approved request in progress (admin)."""
    return _review(request, engine, admin.id, request_id, "start", body.note)


@router.post("/admin/requests/{request_id}/complete", **_ADMIN)  # type: ignore[arg-type]
def complete(
    request: Request, request_id: PathId, admin: AdminUser, engine: EngineDep, body: CompleteBody
) -> PoseRequestOut:
    """Complete a request with the public library pose that fulfils it (admin)."""
    pose = body.pose_id if body.pose_id is not None else body.pose_slug
    return _review(request, engine, admin.id, request_id, "complete", body.note, pose)

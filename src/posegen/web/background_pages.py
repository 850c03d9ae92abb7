"""The dashboard's background changes: each result's variants beside it on the generation page
(their files served like the results'), and a small CSRF-protected form that queues a change
of one result (the same flow and price as ``POST /generations/{id}/results/{rid}/background``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from posegen import backends, backgrounds, generations_read, vision
from posegen.api import downloads
from posegen.backgrounds import records
from posegen.exceptions import InvalidInput, NotFound
from posegen.web.context import PREFIX, Ctx, PageRoute, SignedIn, WebContext, check_csrf
from posegen.web.session import WebSession

router = APIRouter(route_class=PageRoute, include_in_schema=False)

#: The modes the form offers (``prompt`` too where the generation's backend can inpaint).
FORM_MODES = ("solid", "blur", "image")


def _owner_filter(session: WebSession) -> int | None:
    """Admins see every generation; anyone else only their own."""
    assert session.account is not None
    return None if session.is_admin else session.account.id


def background_values(
    ctx: WebContext, session: WebSession, view: generations_read.GenerationView
) -> dict[str, Any]:
    """What the generation page shows of background changes."""
    owner = session.account is not None and session.account.id == view.user_id
    modes = list(FORM_MODES)
    if owner and backends.supports_inpaint(view.backend):
        modes.append("prompt")
    return {
        "variants": records.by_result(ctx.engine, view.id),
        "background_modes": modes if owner else [],
        "background_price": ctx.settings.credits_background_surcharge,
    }


def _form_background(form: dict[str, Any]) -> dict[str, Any]:
    mode = str(form.get("mode", ""))
    if mode == "solid":
        return {"mode": "solid", "color": str(form.get("color", ""))}
    if mode == "blur":
        return {"mode": "blur"}
    if mode == "image":
        raw = str(form.get("upload_id", "")).strip()
        if not raw.isdigit():
            raise InvalidInput("give the id of one of your uploads", kind="invalid-background")
        return {"mode": "image", "uploadId": int(raw)}
    if mode == "prompt":
        return {"mode": "prompt", "prompt": str(form.get("prompt", ""))}
    raise InvalidInput("pick a background mode", kind="invalid-background")


@router.post(
    "/generations/{generation_id:int}/results/{result_id:int}/background",
    name="web-background",
)
async def change_background(
    request: Request, ctx: Ctx, session: SignedIn, generation_id: int, result_id: int
) -> Response:
    """Queue a background change of one result (owner only; a CSRF-protected form POST)."""
    form = dict(await request.form())
    check_csrf(ctx, session, form)
    bg = backgrounds.parse(_form_background(form))

    def queue_it() -> bool:
        assert session.account is not None
        view = generations_read.get_visible(ctx.engine, generation_id, session.account.id)
        backgrounds.check(ctx.engine, bg, session.account.id, view.backend)
        vision.require(ctx.settings)
        return backgrounds.request(ctx.engine, ctx.settings, view.id, result_id, bg).queued

    queued = await run_in_threadpool(queue_it)
    notice = "background" if queued else "background-again"
    return RedirectResponse(f"{PREFIX}/generations/{generation_id}?notice={notice}", 303)


@router.get(
    "/generations/{generation_id:int}/results/{result_id:int}/variants/{variant_id:int}/{kind}",
    name="web-result-variant",
)
def variant_file(
    request: Request,
    ctx: Ctx,
    session: SignedIn,
    generation_id: int,
    result_id: int,
    variant_id: int,
    kind: str,
) -> Response:
    """A changed image (``image``, PNG) or its thumbnail (``thumbnail``, JPEG)."""
    if kind not in ("image", "thumbnail"):
        raise NotFound(f"no {kind!r} for variants")
    generations_read.get_visible(ctx.engine, generation_id, _owner_filter(session))
    v = records.one(ctx.engine, generation_id, result_id, variant_id)
    rel = v.image_path if kind == "image" else v.thumbnail_path
    return downloads.stored_file(request, ctx.settings, rel, max_age=86400)

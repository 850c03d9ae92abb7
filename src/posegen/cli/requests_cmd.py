"""``posegen requests``: the community's pose requests, listed and reviewed by an operator."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from posegen import community, pagination
from posegen.cli.app import state
from posegen.db.models import RequestStatus
from posegen.exceptions import InvalidInput

app = typer.Typer(help="Community pose requests: list and review.", no_args_is_help=True)


def _row(r: community.RequestView) -> dict[str, object]:
    return {
        "id": r.id,
        "name": r.name,
        "status": r.status.value,
        "votes": r.vote_count,
        "requester": r.requester_name,
        "category": r.category_slug,
        "note": r.admin_note,
        "pose": r.fulfilled_pose_slug,
        "createdAt": r.created_at.isoformat(),
    }


@app.command("list")
def list_requests(
    ctx: typer.Context,
    status: Annotated[
        RequestStatus | None, typer.Option("--status", help="Only requests in this status.")
    ] = None,
    sort: Annotated[str, typer.Option("--sort", help="votes or newest.")] = "votes",
    limit: Annotated[int, typer.Option("--limit", min=1, max=pagination.MAX_LIMIT)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Requests, most votes first (or newest first)."""
    if sort not in ("votes", "newest"):
        raise InvalidInput("--sort is votes or newest")
    page = community.list_requests(
        state(ctx).engine,
        0,  # an operator, not a voter
        status=status,
        sort="votes" if sort == "votes" else "newest",
        limit=limit,
    )
    for r in page.items:
        if as_json:
            typer.echo(json.dumps(_row(r)))
        else:
            extra = f"  pose {r.fulfilled_pose_slug}" if r.fulfilled_pose_slug else ""
            typer.echo(
                f"{r.id:>6}  {r.status.value:<11}  {r.vote_count:>5} votes  {r.name}"
                f"  (by {r.requester_name}){extra}"
            )
    if not as_json:
        typer.echo(
            f"{len(page.items)} requests" + (" (more: raise --limit)" if page.next_cursor else "")
        )


@app.command()
def review(
    ctx: typer.Context,
    request_id: Annotated[int, typer.Argument(help="The request's id.", min=1)],
    approve: Annotated[bool, typer.Option("--approve", help="Approve it.")] = False,
    reject: Annotated[bool, typer.Option("--reject", help="Reject it (needs --note).")] = False,
    start: Annotated[bool, typer.Option("--start", help="Mark it in progress.")] = False,
    complete: Annotated[
        str | None,
        typer.Option("--complete", metavar="POSE_SLUG", help="Complete it with this pose."),
    ] = None,
    note: Annotated[str | None, typer.Option("--note", help="Shown to the requester.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The request as JSON.")] = False,
) -> None:
    """Approve, reject, start or complete one request (exactly one of the four)."""
    chosen = [
        name
        for name, given in (
            ("approve", approve),
            ("reject", reject),
            ("start", start),
            ("complete", complete is not None),
        )
        if given
    ]
    if len(chosen) != 1:
        raise InvalidInput("give exactly one of --approve, --reject, --start, --complete")
    done = community.review(
        state(ctx).engine, request_id, chosen[0], actor_id=None, note=note, pose=complete
    )
    if as_json:
        typer.echo(json.dumps(_row(done)))
    else:
        typer.echo(f"request {done.id} ({done.name}) is now {done.status.value}")

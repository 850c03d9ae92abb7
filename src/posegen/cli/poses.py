"""``posegen poses extract PHOTO``: a pose (COCO-18 keypoints) and its OpenPose map from a photo;
with ``--save NAME --user EMAIL``, saved as that user's private pose."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from posegen.cli.app import state
from posegen.controlnet.render import KEYPOINT_NAMES, render_pose
from posegen.exceptions import PosegenError

app = typer.Typer(help="Poses from photos (needs `make install-vision`).", no_args_is_help=True)


@app.command()
def extract(
    ctx: typer.Context,
    photo: Annotated[Path, typer.Argument(help="A photo of a person (PNG, JPEG or WebP).")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the OpenPose map here (PNG).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object: keypoints, pose, warnings.")
    ] = False,
    save: Annotated[
        str | None, typer.Option("--save", help="Save it as a private pose of this name.")
    ] = None,
    user: Annotated[
        str | None, typer.Option("--user", help="Whose private pose (email; with --save).")
    ] = None,
    every: Annotated[
        bool, typer.Option("--all", help="Every person, largest first (--json: `people`).")
    ] = False,
) -> None:
    """The pose of the person in PHOTO: 18 COCO keypoints ``[x, y, confidence]`` (normalised to
    the photo) or null, the canonical pose, and warnings. Exit 1 when no person is found.
    ``--save NAME --user EMAIL`` saves it as that user's private pose (nothing when no person).
    ``--all``: every person, largest first (each with its keypoints and box); the map and a
    saved pose hold them all."""
    from posegen import vision

    if (save is None) != (user is None):
        raise PosegenError("--save and --user go together")
    settings = state(ctx).settings
    try:
        data = photo.read_bytes()
    except OSError as exc:
        raise PosegenError(f"cannot read {photo}: {exc}") from exc
    found = vision.extract_all(settings, data) if every else vision.extract(settings, data)
    if output is not None and found.pose is not None:
        try:
            render_pose(found.pose, found.width, found.height).save(output, "PNG")
        except OSError as exc:
            raise PosegenError(f"cannot write {output}: {exc}") from exc
    if as_json:
        body = {
            "width": found.width,
            "height": found.height,
            "keypoints": found.keypoints(),
            "pose": None if found.pose is None else found.pose.to_json(),
            "peopleSeen": found.people_seen,
            "warnings": [w.to_json() for w in found.warnings],
        }
        if every:
            body["people"] = found.people()
        typer.echo(json.dumps(body))
    else:
        typer.echo(f"{photo}: {found.width} x {found.height}, {found.people_seen} person(s)")
        for index, person in enumerate(
            found.people() if every else [{"keypoints": found.keypoints()}]
        ):
            if every:
                box = ", ".join(f"{v:.3f}" for v in person["box"])
                typer.echo(f"person {index + 1} (box {box}):")
            for name, point in zip(KEYPOINT_NAMES, person["keypoints"], strict=True):
                where = "-" if point is None else f"{point[0]:.4f} {point[1]:.4f}  {point[2]:.2f}"
                typer.echo(f"  {name:<11} {where}")
        if output is not None and found.pose is not None:
            typer.echo(f"map written to {output}")
    for warning in found.warnings:
        typer.echo(f"warning: {warning.message}", err=True)
    if found.pose is None:
        raise typer.Exit(1)
    if save is not None and user is not None:
        from posegen import accounts, library

        engine = state(ctx).engine
        owner = accounts.get_by_email(engine, user)
        saved = library.create_private_pose(engine, owner.id, found.pose.to_json(), save)
        typer.echo(f"saved as private pose {saved.id} of {user}", err=as_json)

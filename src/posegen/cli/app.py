"""The root Typer app and the per-invocation state (settings and engine, built lazily)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Annotated

import typer
from sqlalchemy import Engine

from posegen.config import Settings, load_settings

app = typer.Typer(
    help="posegen: pose-generation service.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@dataclass
class State:
    _settings: Settings | None = None
    _engine: Engine | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings()
        return self._settings

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            from posegen.db.engine import make_engine

            self._engine = make_engine(self.settings)
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


def state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    assert isinstance(obj, State)
    return obj


@app.callback()
def _root(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        # Alembic narrates every step at INFO; the commands print their own one-line outcome.
        logging.getLogger("alembic").setLevel(logging.WARNING)
        # httpx logs every request at INFO: several lines per ComfyUI pose.
        logging.getLogger("httpx").setLevel(logging.WARNING)
    ctx.obj = State()
    ctx.call_on_close(ctx.obj.close)

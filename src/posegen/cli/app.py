"""The root Typer app and the per-invocation state (settings and engine, built lazily)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Annotated

import typer
from sqlalchemy import Engine

from posegen import observe
from posegen.config import Settings, load_settings
from posegen.exceptions import ConfigError

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
    ctx.obj = st = State()
    ctx.call_on_close(st.close)
    try:
        settings: Settings | None = st.settings
    except ConfigError:
        settings = None  # the command reports it in one line when it needs settings
    observe.configure_logging(
        settings.log_format if settings else "auto",
        level=logging.DEBUG if verbose else logging.INFO,
        secrets=log_secrets(settings),
    )
    if not verbose:
        # Alembic narrates every step at INFO; the commands print their own one-line outcome.
        logging.getLogger("alembic").setLevel(logging.WARNING)
        # httpx logs every request at INFO: several lines per ComfyUI pose.
        logging.getLogger("httpx").setLevel(logging.WARNING)
    if settings is not None:
        observe.setup_tracing(f"posegen-{ctx.invoked_subcommand or 'cli'}", settings.trace_file)


def log_secrets(settings: Settings | None) -> list[str | None]:
    """Values no log line may show, whatever code logs them."""
    if settings is None:
        return []
    from sqlalchemy.engine import make_url

    values: list[str | None] = [
        s.get_secret_value() for s in (settings.session_secret, settings.metrics_token) if s
    ]
    try:
        values.append(make_url(settings.effective_database_url).password)
    except Exception:  # a URL SQLAlchemy cannot parse fails later with its own message
        pass
    return values


def keep_generation_logs(ctx: typer.Context, engine: Engine) -> None:
    """This command's log lines about a generation also go to ``generation_logs`` (the
    dashboard's generation page), until the command ends."""
    from posegen.observe import dblog

    handler = dblog.attach(engine)
    ctx.call_on_close(lambda: dblog.detach(handler))

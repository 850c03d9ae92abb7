"""Log lines: one structured format with the context of the work, never a key or a secret."""

from __future__ import annotations

import io
import json
import logging
import re
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from posegen import observe
from posegen.observe.logs import JsonFormatter, TextFormatter, configure_logging

SRC = Path(__file__).resolve().parents[2] / "src" / "posegen"


@pytest.fixture(autouse=True)
def _root_level_restored() -> Iterator[None]:
    """configure_logging sets the root level; later tests expect it as it was."""
    root = logging.getLogger()
    level = root.level
    yield
    root.setLevel(level)


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    """A logger writing JSON lines into a buffer through the handler the CLI installs."""
    out = io.StringIO()
    handler = configure_logging("json", stream=out)
    logger = logging.getLogger("posegen.test.observe")
    yield logger, out, handler
    logging.getLogger().removeHandler(handler)


def _lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_line_carries_the_context_it_was_logged_in(captured) -> None:
    logger, out, _ = captured
    with observe.log_context(request_id="r-1", user_id=7):
        with observe.log_context(generation_id=42, lease_token=3):
            logger.info("inner", extra={"pose_id": 5})
        logger.warning("outer")
    logger.info("outside")
    inner, outer, outside = _lines(out)
    assert inner["msg"] == "inner" and inner["level"] == "INFO"
    assert inner["logger"] == "posegen.test.observe"
    assert {k: inner[k] for k in ("request_id", "user_id", "generation_id", "pose_id")} == {
        "request_id": "r-1",
        "user_id": 7,
        "generation_id": 42,
        "pose_id": 5,
    }
    assert inner["lease_token"] == 3
    assert outer["request_id"] == "r-1" and "generation_id" not in outer
    assert set(outside) == {"ts", "level", "logger", "msg"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(outside["ts"]))


def test_threads_get_the_context_only_when_carried(captured) -> None:
    logger, out, _ = captured
    with observe.log_context(generation_id=9, worker="w-1"):
        carried = threading.Thread(target=observe.carry(lambda: logger.info("carried")))
        bare = threading.Thread(target=lambda: logger.info("bare"))
    for t in (carried, bare):
        t.start()
        t.join()
    by_msg = {line["msg"]: line for line in _lines(out)}
    assert by_msg["carried"]["generation_id"] == 9 and by_msg["carried"]["worker"] == "w-1"
    assert "generation_id" not in by_msg["bare"]


def test_bind_reaches_lines_logged_after_it_in_the_same_block(captured) -> None:
    logger, out, _ = captured
    with observe.log_context(request_id="r-2"):
        # A dependency running in a copied context (as FastAPI runs them) binds the user.
        binder = threading.Thread(target=observe.carry(lambda: observe.bind(user_id=11)))
        binder.start()
        binder.join()
        logger.info("after")
    observe.bind(user_id=99)  # outside any block: nothing to bind to, and no error
    logger.info("later")
    after, later = _lines(out)
    assert after["user_id"] == 11
    assert "user_id" not in later


def test_keys_bearer_tokens_and_registered_secrets_are_redacted(captured) -> None:
    logger, out, _ = captured
    key = "pg_" + secrets.token_urlsafe(32)
    secret = "s-" + secrets.token_hex(16)
    observe.add_secret(secret)
    logger.info("got %s with Bearer %s", key, "abcDEF123456789")
    logger.info("fields", extra={"url": f"/x?key={key}", "cfg": {"secret": secret}})
    try:
        raise ValueError(f"bad key {key}")
    except ValueError:
        logger.exception("failed")
    text = out.getvalue()
    assert key not in text and secret not in text and "abcDEF123456789" not in text
    assert text.count("[redacted]") >= 5
    first, second, third = _lines(out)
    assert first["msg"] == "got [redacted] with [redacted]"
    assert second["url"] == "/x?key=[redacted]"
    assert "ValueError: bad key [redacted]" in str(third["exc"])


def test_text_lines_for_people_quote_what_needs_quoting() -> None:
    record = logging.LogRecord("posegen.x", logging.INFO, __file__, 1, "hello %s", ("you",), None)
    record.generation_id = 4
    record.note = "two words"
    record.empty = ""
    line = TextFormatter().format(record)
    assert re.fullmatch(
        r"\S+Z INFO posegen\.x: hello you generation_id=4 empty=\"\" note=\"two words\"", line
    ), line
    assert json.loads(JsonFormatter().format(record))["note"] == "two words"


def test_auto_is_text_on_a_terminal_and_json_otherwise() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    root = logging.getLogger()
    for stream, expect in ((io.StringIO(), JsonFormatter), (Tty(), TextFormatter)):
        handler = configure_logging("auto", stream=stream)
        try:
            assert isinstance(handler.formatter, expect)
        finally:
            root.removeHandler(handler)


def test_reconfiguring_replaces_only_its_own_handler() -> None:
    root = logging.getLogger()
    foreign = logging.NullHandler()
    root.addHandler(foreign)
    try:
        first = configure_logging("json", stream=io.StringIO())
        second = configure_logging("text", stream=io.StringIO())
        assert first not in root.handlers and second in root.handlers and foreign in root.handlers
        root.removeHandler(second)
    finally:
        root.removeHandler(foreign)


def test_importing_posegen_configures_no_logging() -> None:
    code = (
        "import logging, posegen.api.app, posegen.worker, posegen.queue, posegen.observe;"
        "import posegen.worker.pipeline;"
        "assert logging.getLogger().handlers == [], logging.getLogger().handlers"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_no_print_calls_in_the_package() -> None:
    """Logs go through logging; commands talk to people through typer.echo / rich consoles."""
    bare_print = re.compile(r"(?<![.\w])print\(")
    offenders = [
        f"{path.relative_to(SRC)}:{n}"
        for path in SRC.rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if bare_print.search(line) and not line.lstrip().startswith("#")
    ]
    assert offenders == []

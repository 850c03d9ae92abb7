"""SIGTERM/SIGINT for a worker run from the CLI: the first asks for a graceful stop, a second
one exits at once (in-flight generations are then left to the recovery loop)."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType

log = logging.getLogger(__name__)


def install(on_first: Callable[[], None]) -> Callable[[], None]:
    """Install the handlers (main thread only); returns a function restoring the old ones."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    received: list[int] = []

    def handle(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        if len(received) == 1:
            log.info(
                "stopping gracefully; send the signal again to exit at once",
                extra={"signal": signal.Signals(signum).name},
            )
            on_first()
            return
        log.warning("second signal: exiting now", extra={"signal": signal.Signals(signum).name})
        os._exit(128 + signum)

    old = {s: signal.signal(s, handle) for s in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        # Once a stop was asked for, the process is on its way out: keep our handler so a second
        # signal during the rest of the shutdown still means "exit now" (128 + signum) rather than
        # the default action racing the graceful exit.
        if received:
            return
        for s, h in old.items():
            signal.signal(s, h)

    return restore

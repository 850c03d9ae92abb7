"""The app on a real uvicorn server at 127.0.0.1, configured as ``posegen serve`` runs it."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from posegen.api import server
from posegen.config import Settings


@contextlib.contextmanager
def live_server(app: FastAPI, settings: Settings) -> Iterator[tuple[str, int]]:
    """Yields (base URL of the API, port); the server stops on exit."""
    config = server.make_config(app, settings, "127.0.0.1", 0, lifespan="off")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        if not thread.is_alive():
            raise RuntimeError("server did not start")
        threading.Event().wait(0.01)
    port = srv.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/api/pose-generator", port
    finally:
        srv.should_exit = True
        thread.join(10)

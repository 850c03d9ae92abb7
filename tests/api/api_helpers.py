"""Helpers shared by the API tests (imported by name: tests/api is on sys.path)."""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import Engine

from posegen import queue
from posegen.api.app import PREFIX
from posegen.config import Settings
from posegen.db.models import PoseStatus
from posegen.queue import ClaimedJob
from posegen.storage import make_storage

ROOT_PATHS = ("/healthz", "/readyz", "/openapi.json", "/docs")


@dataclass(frozen=True)
class Keys:
    user: str
    other: str
    admin: str
    user_id: int
    other_id: int
    admin_id: int


class Api:
    """A TestClient that prefixes API paths and sends a bearer key."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    def __call__(
        self, method: str, path: str, key: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        url = path if path.startswith((*ROOT_PATHS, PREFIX)) else PREFIX + path
        return self.client.request(method, url, headers=headers, **kwargs)


def problem_of(response: httpx.Response, status: int) -> dict[str, Any]:
    """Assert ``response`` is a problem document with ``status``; return its body."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"] == "https://posegen.dev/problems/" + body["kind"]
    return body


def png(width: int = 64, height: int = 48, colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A small valid PNG."""
    buf = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buf, "PNG")
    return buf.getvalue()


def bomb_png(width: int = 30_000, height: int = 30_000) -> bytes:
    """A tiny PNG whose header declares a huge image (decoding it would need gigabytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


def claim_one(engine: Engine, settings: Settings) -> ClaimedJob:
    """Claim exactly one pending generation, as a worker would."""
    jobs = queue.claim(engine, settings, "test-worker", 1)
    assert len(jobs) == 1
    return jobs[0]


def write_pose(
    engine: Engine,
    settings: Settings,
    job: ClaimedJob,
    pose_id: int | None,
    index: int,
    *,
    failed: bool = False,
    backend: str | None = None,
    model: str | None = None,
) -> None:
    """Store an image (unless ``failed``) and record the pose through the queue, fenced."""
    key = queue.variation_key(pose_id, index)
    image = thumb = None
    size = None
    if not failed:
        image, thumb, size = make_storage(settings).save_result(
            job.id, key, png(64, 64, (index, 90, 9))
        )
    queue.record_pose(
        engine,
        job.id,
        job.lease_token,
        queue.PoseResult(
            variation_key=key,
            pose_id=pose_id,
            variation_index=index,
            status=PoseStatus.FAILED if failed else PoseStatus.COMPLETED,
            image_path=image,
            thumbnail_path=thumb,
            seed=index,
            duration_ms=5,
            error_kind="generator" if failed else None,
            error_message="backend said no" if failed else None,
            bytes=size,
            backend=backend,
            model=model,
        ),
    )

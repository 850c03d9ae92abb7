"""The world the pipeline tests run in: a user, a project with an uploaded subject, the built-in
library, and helpers to submit through the real queue and run a real in-process worker."""

from __future__ import annotations

import io
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from PIL import Image
from sqlalchemy import Engine, insert, select

from posegen import queue
from posegen.config import Settings
from posegen.db.models import GenerationType, PoseCategory, PoseLibrary
from posegen.queue import GenerationRequest
from posegen.worker import JobHandler, Worker
from posegen.worker.pipeline import PipelineHandler, make_handler


@dataclass
class World:
    settings: Settings
    engine: Engine
    user_id: int
    project_id: int
    pose_ids: list[int]
    origin: str

    def submit(self, pose_ids: list[int] | None = None, **extra: Any) -> int:
        ids = self.pose_ids if pose_ids is None else pose_ids
        values: dict[str, Any] = dict(
            user_id=self.user_id,
            project_id=self.project_id,
            type=GenerationType.LIBRARY if ids else GenerationType.TEXT,
            pose_ids=ids,
            variations=2,
            prompt="studio photo",
            width=320,
            height=256,
        )
        values.update(extra)
        return queue.submit(self.engine, self.settings, GenerationRequest(**values)).generation_id

    def add_pose(self, name: str, map_url: str) -> int:
        """A library pose whose map is only a URL (no keypoints)."""
        with self.engine.begin() as conn:
            category = conn.execute(select(PoseCategory.id).limit(1)).scalar_one()
            return int(
                conn.execute(
                    insert(PoseLibrary)
                    .values(
                        slug=name.lower().replace(" ", "-"),
                        name=name,
                        description="from a URL",
                        category_id=category,
                        tags=[],
                        controlnet_map_url=map_url,
                    )
                    .returning(PoseLibrary.id)
                ).scalar_one()
            )

    def run_worker(self, handler: JobHandler, **settings: Any) -> Worker:
        """One in-process worker in burst mode: returns when nothing is left to do."""
        tuned = self.settings.model_copy(update=settings) if settings else self.settings
        worker = Worker(tuned, self.engine, handler, concurrency=2, burst=True)
        worker.run()
        return worker

    def run_pipeline(self, handler: PipelineHandler | None = None) -> None:
        """:meth:`run_worker` with the real pipeline (``make_handler`` for these settings unless
        a handler is given), closing the handler afterwards."""
        if handler is None:
            made = make_handler(self.settings)
            assert isinstance(made, PipelineHandler)
            handler = made
        try:
            self.run_worker(handler)
        finally:
            handler.close()


class Origin(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/text"):
            body, kind = b"this is not an image", "text/plain"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def subject_png(size: tuple[int, int] = (300, 240)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (180, 150, 120)).save(buf, format="PNG")
    return buf.getvalue()

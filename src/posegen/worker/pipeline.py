"""The job handler a worker runs for each claimed generation, pose by pose.

Per pose: the pose map (map cache), the prompt, the seed, the backend call under a deadline, the
image and thumbnail into storage, then one fenced write of the pose row and progress; the store
and the write of pose k run on a helper thread while the backend makes pose k+1. Finished
variation keys are skipped, so a resumed generation never redoes a pose. A permanent per-pose
failure is recorded and the generation goes on; a transient one (backend unreachable) leaves the
handler as ``GeneratorError(transient=True)`` and the worker retries the generation later.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from PIL import Image

from posegen import backgrounds, exporting, observe
from posegen.config import Settings
from posegen.controlnet import MapCache
from posegen.db.models import PoseStatus
from posegen.db.types import utcnow
from posegen.exceptions import FetchError, GeneratorError, InvalidInput, StorageUnavailable
from posegen.generators import GenerateRequest, GenerateResult, Generator, make_generator, model_id
from posegen.generators.base import fit_subject
from posegen.observe.timeline import WRITE_LINE
from posegen.pose import Framing
from posegen.queue import ClaimedJob, PoseResult, variation_key
from posegen.storage import ResultStore, make_storage
from posegen.worker.job_inputs import PoseInfo, build_prompt, load_inputs, pick_seed
from posegen.worker.pipeline_clock import OverheadClock, PoseObserver
from posegen.worker.pipeline_images import TRANSIENT_FETCH_KINDS, PipelineImages, framing_of
from posegen.worker.pipeline_writes import DEFAULT_DEPTH, AheadWriter

if TYPE_CHECKING:
    from posegen.worker import JobContext, JobHandler

log = logging.getLogger(__name__)

__all__ = ["PipelineHandler", "PoseObserver", "make_handler"]


def make_handler(settings: Settings) -> JobHandler:
    """The real handler: backend from ``POSEGEN_BACKEND`` (checked now; ConfigError if wrong)."""
    return PipelineHandler(settings)


class PipelineHandler:
    """Callable ``(job, ctx)``; one per worker process, shared by its job threads."""

    def __init__(
        self,
        settings: Settings,
        generator: Generator | None = None,
        storage: ResultStore | None = None,
        maps: MapCache | None = None,
        on_pose: PoseObserver | None = None,
        write_depth: int = DEFAULT_DEPTH,
    ) -> None:
        self.settings = settings
        self.on_pose = on_pose
        self.write_depth = write_depth
        self.generator = generator or make_generator(settings)
        # Background repaints (follow-up tasks) use this generator too, not a second one.
        backgrounds.offer_generator(settings.backend, self.generator)
        #: What made the images, recorded on every result row.
        self.model = model_id(settings)
        self.storage = storage or make_storage(settings)
        self.images = PipelineImages(settings, maps or MapCache(settings))

    def __call__(self, job: ClaimedJob, ctx: JobContext) -> None:
        _Run(self, job, ctx).execute()

    def probe(self) -> None:
        """Ask the backend whether it can work (the worker's start-up check and its breaker's
        probe). Raises GeneratorError while it is unavailable, ConfigError when it answers but
        cannot run what posegen needs. Backends without a probe always can. The result store
        is asked too (an object store that cannot take a write is an outage like a backend's)."""
        store_probe = getattr(self.storage, "probe", None)
        if callable(store_probe):
            try:
                store_probe()
            except StorageUnavailable as exc:
                raise GeneratorError(
                    f"object store: {exc.message}", transient=True, outage=True, kind="storage"
                ) from exc
        probe = getattr(self.generator, "probe", None)
        if callable(probe):
            probe()

    def close(self) -> None:
        """Release the backend's connections and flush the map cache's counters."""
        close = getattr(self.generator, "close", None)
        if callable(close):
            close()
        self.images.maps.close()


class _Run:
    """One handler invocation (one claim of one generation)."""

    def __init__(self, handler: PipelineHandler, job: ClaimedJob, ctx: JobContext) -> None:
        self.h = handler
        self.job = job
        self.ctx = ctx
        self.clock = OverheadClock(handler.generator.name, handler.on_pose)
        self.writer = AheadWriter(handler.write_depth)
        self.map_s = 0.0
        self.poses: dict[int, PoseInfo] = {}
        #: The export formats' table, loaded once per run when the generation asks for exports.
        self.export_table: dict[str, Any] | None = None

    def execute(self) -> None:
        try:
            self._poses()
            self.writer.flush()
        except BaseException:
            self.writer.close()  # the pose in flight still gets checkpointed
            raise
        self.writer.close()
        self.clock.finish()

    def _poses(self) -> None:
        job = self.job
        inputs = load_inputs(self.ctx.engine, job.project_id, list(job.pose_ids), job.user_id)
        subject = self.h.images.subject(inputs.subject)
        self.poses = dict(inputs.poses)
        # Fitted once per framing, not once per pose: every backend gets it at the output size.
        fitted: dict[Framing | None, Image.Image] = {}
        slots: Sequence[int | None] = list(job.pose_ids) if job.pose_ids else [None]
        for pose_id in slots:
            pending = [
                (i, key)
                for i in range(job.variations)
                if (key := variation_key(pose_id, i)) not in job.done_keys
            ]
            if not pending:
                continue
            if self.ctx.should_stop():
                return
            pose = inputs.poses.get(pose_id) if pose_id is not None else None
            if pose_id is not None and pose is None:
                self._fail_all(pose_id, pending, "pose-missing", f"pose {pose_id} no longer exists")
                continue
            pose_subject = None
            if subject is not None:
                framing = framing_of(pose)
                if framing not in fitted:
                    fitted[framing] = fit_subject(subject, job.width, job.height, framing)
                pose_subject = fitted[framing]
            with (
                observe.log_context(pose_id=pose_id),
                observe.span("posegen.pose", pose_id=pose_id, variations=len(pending)),
            ):
                requests = self._requests(pose_id, pose, pending, pose_subject)
                if requests is None:
                    continue
                step = max(1, self.h.generator.max_batch)
                for start in range(0, len(requests), step):
                    if start and self.ctx.should_stop():
                        return
                    self._generate(pose_id, requests[start : start + step])

    def _requests(
        self,
        pose_id: int | None,
        pose: PoseInfo | None,
        pending: list[tuple[int, str]],
        subject: Image.Image | None,
    ) -> list[tuple[int, str, GenerateRequest]] | None:
        """The pose's requests, or None when its map failed (recorded as failed poses)."""
        job = self.job
        started = time.perf_counter()
        try:
            with observe.span("posegen.pose.map"):
                pose_map = self.h.images.pose_map(pose, (job.width, job.height))
        except (FetchError, InvalidInput) as exc:
            if exc.kind in TRANSIENT_FETCH_KINDS:
                raise GeneratorError(
                    f"pose map of pose {pose_id}: {exc.message}", transient=True, kind=exc.kind
                ) from exc
            self._fail_all(pose_id, pending, exc.kind, f"pose map: {exc.message}")
            return None
        # Shared by the pose's variations; stored with each (the dashboard's per-pose timings).
        self.map_s = time.perf_counter() - started
        prompt = build_prompt(job.prompt, pose)
        return [
            (
                index,
                key,
                GenerateRequest(
                    subject=subject,
                    pose_map=pose_map,
                    prompt=prompt,
                    negative_prompt=job.negative_prompt,
                    seed=pick_seed(job.seed, job.id, key, index),
                    width=job.width,
                    height=job.height,
                    variation=index,
                ),
            )
            for index, key in pending
        ]

    def _generate(self, pose_id: int | None, chunk: list[tuple[int, str, GenerateRequest]]) -> None:
        n = len(chunk)
        deadline = self._deadline(n)
        reqs = [dataclasses.replace(r, deadline=deadline) for _, _, r in chunk]
        started = self.clock.backend_starts()
        try:
            with observe.span("posegen.pose.backend", backend=self.h.generator.name, images=n):
                results = self.h.generator.generate_batch(reqs)
        except GeneratorError as exc:
            self.clock.backend_ends(started, n)
            if exc.transient or exc.whole_generation:
                raise  # retried later, or fails the generation once (not pose by pose)
            self._fail_all(pose_id, [(i, k) for i, k, _ in chunk], exc.kind, exc.message)
            return
        self.clock.backend_ends(started, n)
        backend_s = (time.perf_counter() - started) / n
        done = list(zip(chunk, results, strict=True))
        map_s = self.map_s
        self.writer.submit(observe.carry(lambda: self._store_all(pose_id, done, backend_s, map_s)))

    def _store_all(
        self,
        pose_id: int | None,
        done: list[tuple[tuple[int, str, GenerateRequest], GenerateResult]],
        backend_s: float,
        map_s: float,
    ) -> None:
        """Runs on the writer thread: files first, then the checkpoint that points at them."""
        for (index, key, req), result in done:
            started = time.perf_counter()
            try:
                with observe.span("posegen.pose.storage", variation_key=key):
                    stored = self.h.storage.save_result(
                        self.job.id, key, result.image_png, result.image
                    )
            except OSError as exc:
                raise GeneratorError(
                    f"cannot store the result: {exc.strerror or exc}",
                    transient=True,
                    kind="storage",
                ) from exc
            except StorageUnavailable as exc:
                # The object store refused or is away: not the generation's fault. An outage:
                # the breaker pauses claiming and the generation waits without losing an attempt.
                raise GeneratorError(
                    f"cannot store the result: {exc.message}",
                    transient=True,
                    outage=True,
                    kind="storage",
                ) from exc
            try:
                exports = self._exports(key, pose_id, result) if self.job.export_formats else []
            except InvalidInput as exc:
                # The renderer cannot use this image or pose: the pose fails (a pose is complete
                # with its exports or not at all), the rest of the generation goes on.
                self._record(
                    PoseResult(
                        variation_key=key,
                        pose_id=pose_id,
                        variation_index=index,
                        status=PoseStatus.FAILED,
                        error_kind="export-failed",
                        error_message=f"export: {exc.message}"[:1000],
                        backend=self.h.generator.name,
                        model=self.h.model,
                    )
                )
                continue
            meta = dict(result.meta)
            meta.update(
                width=(result.image.width if result.image else req.width),
                height=(result.image.height if result.image else req.height),
                backendSeconds=round(backend_s, 6),
            )
            if result.steps is not None:
                meta["steps"] = result.steps
            storage_s = time.perf_counter() - started
            # The write's own time cannot be inside the row it writes: it is in the log line.
            meta["timings"] = {
                "mapMs": _ms(map_s),
                "backendMs": _ms(backend_s),
                "storageMs": _ms(storage_s),
            }
            self._record(
                PoseResult(
                    variation_key=key,
                    pose_id=pose_id,
                    variation_index=index,
                    status=PoseStatus.COMPLETED,
                    image_path=stored.image,
                    thumbnail_path=stored.thumbnail,
                    seed=result.seed,
                    prompt_used=result.prompt,
                    duration_ms=round(result.duration_s * 1000),
                    meta=meta,
                    bytes=stored.bytes,
                    backend=self.h.generator.name,
                    model=self.h.model,
                    exports=tuple(exports),
                    follow_ups=self._follow_ups(),
                )
            )

    def _follow_ups(self) -> tuple[Any, ...]:
        """The background change asked at submit, queued with each result as it lands."""
        if not self.job.background:
            return ()
        from posegen import backgrounds

        return (backgrounds.follow_up(self.job.background),)

    def _exports(self, key: str, pose_id: int | None, result: GenerateResult) -> list[Any]:
        """The pose's exports, stored before its write (which names them): a retried pose
        rewrites the same names, and the rows land with the pose or not at all."""
        formats = list(self.job.export_formats or ())
        pose = self.poses.get(pose_id) if pose_id is not None else None
        try:
            if self.export_table is None:
                self.export_table = exporting.formats(self.h.settings)
            return exporting.make(
                self.h.storage,
                self.h.settings,
                self.job.id,
                key,
                result.image if result.image is not None else result.image_png,
                pose.keypoints if pose is not None else None,
                [f for f in formats if f in self.export_table],
                self.export_table,
            )
        except (OSError, StorageUnavailable) as exc:
            raise GeneratorError(
                f"cannot store the exports: {exc}", transient=True, kind="storage"
            ) from exc

    def _record(self, result: PoseResult) -> None:
        """The fenced write of a finished pose, timed and logged with its timings."""
        started = time.perf_counter()
        with observe.span("posegen.pose.write", variation_key=result.variation_key):
            self.ctx.record_pose(result)
        timings = (result.meta or {}).get("timings", {})
        log.info(
            WRITE_LINE,
            extra={
                "variation_key": result.variation_key,
                "map_ms": timings.get("mapMs"),
                "backend_ms": timings.get("backendMs"),
                "storage_ms": timings.get("storageMs"),
                "write_ms": _ms(time.perf_counter() - started),
            },
        )

    def _fail_all(
        self, pose_id: int | None, pending: Sequence[tuple[int, str]], kind: str, message: str
    ) -> None:
        log.info(
            "pose failed",
            extra={"generation_id": self.job.id, "pose_id": pose_id, "kind": kind},
        )
        failed = [
            PoseResult(
                variation_key=key,
                pose_id=pose_id,
                variation_index=index,
                status=PoseStatus.FAILED,
                error_kind=kind,
                error_message=message[:1000],
                backend=self.h.generator.name,
                model=self.h.model,
            )
            for index, key in pending
        ]

        def write() -> None:
            for result in failed:
                self.ctx.record_pose(result)

        # Through the writer too: one thread writes this generation's checkpoints, in order.
        self.writer.submit(observe.carry(write))

    def _deadline(self, n: int) -> float:
        """Monotonic deadline for a call of ``n`` images: the per-image timeout, capped by the
        generation's hard deadline."""
        budget = self.h.settings.generator_timeout_seconds * n
        left = (self.job.deadline_at - utcnow()).total_seconds()
        return time.monotonic() + max(0.0, min(budget, left))


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)

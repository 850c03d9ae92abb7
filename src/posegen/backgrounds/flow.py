"""Background changes made by workers, as follow-up tasks of kind ``background`` (one per
result and change): asked for at submit (each result's task is queued in its pose's own
checkpoint) or later on one result (``POST /generations/{id}/results/{rid}/background``).

The worker segments the person in the result (the vision helper), composites the new
background (solid, an upload of the owner's, the result's own background blurred, or a
repainted one from a backend that can inpaint), stores the image and its thumbnail under a
name fixed by the result and the change, and writes the ``result_variants`` row in the task's
fenced completion: the original is kept; a retry rewrites the same names; a crash between
the files and the row leaves files no row names, which the next attempt overwrites.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from sqlalchemy import Engine, select

from posegen import uploads
from posegen.backgrounds import records, spec
from posegen.config import Settings
from posegen.db.engine import read_connection
from posegen.db.models import GeneratedPose, PoseStatus
from posegen.exceptions import (
    Conflict,
    FetchError,
    GeneratorError,
    InvalidInput,
    NotFound,
    PosegenError,
    StorageUnavailable,
)
from posegen.generators.base import InpaintRequest, inpaint
from posegen.queue import tasks
from posegen.storage import ResultStore

log = logging.getLogger(__name__)

#: The task kind (``generation_tasks.kind``) and the variants' kind.
KIND = "background"


def variant_key(bg: dict[str, Any]) -> str:
    """One variant per distinct change of a result: ``bg-<digest>``."""
    return f"bg-{spec.digest(spec.public(bg) or {})}"


def task_key(result_id: int, bg: dict[str, Any], idempotency_key: str | None = None) -> str:
    """``background:<result>:<digest>`` (the same change is one task), or the client's
    Idempotency-Key hashed in place of the digest."""
    if idempotency_key is not None:
        return f"{KIND}:{result_id}:k{hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]}"
    return f"{KIND}:{result_id}:{spec.digest(spec.public(bg) or {})}"


def task_spec(
    result_id: int,
    bg: dict[str, Any],
    *,
    price: int = 0,
    covered: int = 0,
    idempotency_key: str | None = None,
) -> tasks.TaskSpec:
    public = spec.public(bg) or {}
    return tasks.TaskSpec(
        KIND,
        task_key(result_id, bg, idempotency_key),
        {"background": public},
        result_id=result_id,
        price=price,
        covered=covered,
    )


def follow_up(bg: dict[str, Any]) -> Callable[[int], tasks.TaskSpec]:
    """What a pose's checkpoint queues for its new result when the generation asked for a
    background at submit: the change, with the part of the price that paid for it (what its
    failure refunds)."""
    covered = int(bg.get("_credits", 0) or 0)
    return lambda result_id: task_spec(result_id, bg, covered=covered)


@dataclass(frozen=True)
class Requested:
    task_id: int
    task_key: str
    status: str
    queued: bool
    result_id: int
    background: dict[str, Any]
    price: int


def request(
    engine: Engine,
    settings: Settings,
    generation_id: int,
    result_id: int,
    bg: dict[str, Any],
    idempotency_key: str | None = None,
) -> Requested:
    """Queue the change of one completed result, charged when queued; idempotent (the same
    change, or the same Idempotency-Key with the same change, answers the same task)."""
    with read_connection(engine) as conn:
        found = conn.execute(
            select(GeneratedPose.id).where(
                GeneratedPose.id == result_id,
                GeneratedPose.generation_id == generation_id,
                GeneratedPose.status == PoseStatus.COMPLETED,
            )
        ).first()
    if found is None:
        raise NotFound(
            f"generation {generation_id} has no completed result {result_id}",
            kind="result-not-found",
        )
    price = settings.credits_background_surcharge
    one = task_spec(result_id, bg, price=price, idempotency_key=idempotency_key)
    before = tasks.params_by_key(engine, generation_id, one.key)
    if before is not None and before.get("background") != one.params["background"]:
        raise Conflict(
            "this Idempotency-Key was used for a different background change",
            kind="idempotency-conflict",
        )
    states = tasks.enqueue(engine, settings, generation_id, [one])
    if not states:
        raise NotFound(f"generation {generation_id} not found")
    st = states[0]
    stored = tasks.params_of(engine, st.id)
    if stored.get("background") != one.params["background"]:
        raise Conflict(
            "this Idempotency-Key was used for a different background change",
            kind="idempotency-conflict",
        )
    return Requested(
        st.id, st.key, st.status.value, st.queued, result_id, one.params["background"], price
    )


# --- the worker's side --------------------------------------------------------------------
_generators: dict[str, Any] = {}
_generators_lock = threading.Lock()


def set_generator(backend: str, generator: Any) -> None:
    """Use ``generator`` for ``prompt`` changes of ``backend`` in this process (a worker that
    already made its backend hands it here; tests hand a small one). None forgets it."""
    with _generators_lock:
        if generator is None:
            _generators.pop(backend, None)
        else:
            _generators[backend] = generator


def offer_generator(backend: str, generator: Any) -> None:
    """The worker's own generator for ``backend``, used for ``prompt`` changes unless one is
    set already: one set of weights per process, not a second copy for repaints."""
    with _generators_lock:
        _generators.setdefault(backend, generator)


def _generator_for(settings: Settings) -> Any:
    with _generators_lock:
        found = _generators.get(settings.backend)
        if found is None:
            from posegen.generators import make_generator

            found = _generators[settings.backend] = make_generator(settings)
        return found


def run_task(
    engine: Engine,
    settings: Settings,
    store: ResultStore,
    task: tasks.ClaimedTask,
    stopping: threading.Event,
) -> str:
    """The ``background`` task handler. Returns the outcome for the worker's stats."""
    bg = dict(task.params.get("background") or {})
    try:
        if task.result_id is None:
            raise NotFound("the task names no result", kind="result-not-found")
        with read_connection(engine) as conn:
            row = conn.execute(
                select(GeneratedPose.variation_key, GeneratedPose.image_path).where(
                    GeneratedPose.id == task.result_id,
                    GeneratedPose.status == PoseStatus.COMPLETED,
                )
            ).first()
        if row is None or not row.image_path:
            raise NotFound(f"result {task.result_id} not found", kind="result-not-found")
        data = store.read(str(row.image_path))
        if stopping.is_set():
            tasks.release(engine, task)
            return "released"
        with _lease_kept(engine, settings, task):
            png = change(engine, settings, task.user_id, data, bg)
        vkey = variant_key(bg)
        stored = store.save_result(
            task.generation_id, f"{row.variation_key}-{vkey}"[:100], png, None
        )
        with Image.open(io.BytesIO(png)) as im:
            width, height = im.size
    except (StorageUnavailable, OSError) as exc:
        tasks.fail(engine, settings, task, "storage", str(exc), transient=True)
        return "retrying"
    except GeneratorError as exc:
        tasks.fail(
            engine, settings, task, exc.kind or "generator", exc.message, transient=exc.transient
        )
        return "retrying" if exc.transient else "failed"
    except PosegenError as exc:
        kind = exc.kind or "invalid-input"
        transient = kind in ("vision-failed", "vision-busy", "vision-timeout")
        tasks.fail(engine, settings, task, kind, exc.message, transient=transient)
        return "retrying" if transient else "failed"
    except Exception as exc:  # a bug: retried, then failed with the reason
        log.exception("background task failed", extra={"task_id": task.id})
        tasks.fail(
            engine, settings, task, "internal", f"{type(exc).__name__}: {exc}", transient=True
        )
        return "retrying"
    result_id = task.result_id

    def apply(conn: Any) -> dict[str, Any]:
        variant_id, counted = records.insert(
            conn,
            result_id=result_id,
            generation_id=task.generation_id,
            kind=KIND,
            variant_key=vkey,
            params=bg,
            image_path=stored.image,
            thumbnail_path=stored.thumbnail,
            size=stored.bytes,
            width=width,
            height=height,
            task_id=task.id,
        )
        from posegen import exporting  # a sibling domain: the variant's exports follow

        follow = exporting.for_variant(conn, settings, task.generation_id, result_id, variant_id)
        return {
            "variantId": variant_id,
            "mode": bg.get("mode"),
            "storedBytes": counted,
            tasks.FOLLOW_UPS: follow,
        }

    if tasks.complete(engine, task, apply):
        return "completed"
    return "lease-lost"


@contextlib.contextmanager
def _lease_kept(engine: Engine, settings: Settings, task: tasks.ClaimedTask) -> Iterator[None]:
    """Renew the task's lease while the block runs (the vision helper's first start, a busy
    helper or a backend's repaint can outlast one lease); the completion stays fenced."""
    done = threading.Event()

    def renew() -> None:
        while not done.wait(max(settings.lease_seconds / 3, 0.1)):
            try:
                if not tasks.extend(engine, settings, task):
                    return
            except Exception:  # the completion's fence decides; a missed renewal is no error
                log.warning("could not renew a background task's lease", exc_info=True)

    keeper = threading.Thread(target=renew, name=f"bg-lease-{task.id}", daemon=True)
    keeper.start()
    try:
        yield
    finally:
        done.set()
        keeper.join(timeout=5)


def change(
    engine: Engine, settings: Settings, user_id: int, data: bytes, bg: dict[str, Any]
) -> bytes:
    """The result ``data`` with its background changed as ``bg`` says (PNG bytes)."""
    from posegen import vision

    mode = bg.get("mode")
    mask = vision.segment(settings, data)
    if mask.size == 0 or int(mask.max()) < 128:
        raise InvalidInput("no person was found in the result", kind="no-person")
    if mode == "solid":
        return vision.change_background(data, mask, "solid", {"color": bg.get("color")})
    if mode == "blur":
        params = {} if bg.get("radius") is None else {"radius": float(bg["radius"])}
        return vision.change_background(data, mask, "blur", params)
    if mode == "image":
        _, backdrop = uploads.content(engine, settings, int(bg.get("uploadId", 0)), user_id)
        return vision.change_background(data, mask, "image", {"image": backdrop})
    if mode == "prompt":
        backdrop = _repaint(settings, data, mask, bg)
        return vision.change_background(data, mask, "image", {"image": backdrop})
    raise InvalidInput(f"unknown background mode {mode!r}", kind="invalid-background")


def _repaint(settings: Settings, data: bytes, mask: np.ndarray, bg: dict[str, Any]) -> bytes:
    """A new background painted by the backend around the person (kept where the mask is)."""
    generator = _generator_for(settings)
    try:
        with Image.open(io.BytesIO(data)) as im:
            image = im.convert("RGB")
    except (OSError, ValueError) as exc:
        raise FetchError(f"the result could not be decoded: {exc}", kind="not-an-image") from exc
    keep = Image.fromarray(np.where(mask >= 128, 255, 0).astype(np.uint8), "L")
    if keep.size != image.size:
        keep = keep.resize(image.size, Image.Resampling.NEAREST)
    seed = int(spec.digest(bg)[:8], 16) & 0x7FFFFFFF
    result = inpaint(
        generator,
        InpaintRequest(
            image=image,
            mask=keep,
            prompt=str(bg.get("prompt", "")),
            negative_prompt=bg.get("negativePrompt"),
            seed=seed,
            deadline=time.monotonic() + settings.generator_timeout_seconds,
        ),
    )
    return result.image_png

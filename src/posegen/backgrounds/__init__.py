"""Background changes of results: ``solid``, ``image`` (an upload of the owner's), ``blur``
and ``prompt`` (backends that can inpaint), asked for at submit or later on one result, made
by workers as follow-up tasks (:mod:`flow`), kept as variants beside the original
(:mod:`records`). The compositing itself is ``posegen.vision.change_background``."""

from __future__ import annotations

from posegen.backgrounds.flow import (
    KIND,
    Requested,
    follow_up,
    offer_generator,
    request,
    run_task,
    task_spec,
)
from posegen.backgrounds.records import Variant
from posegen.backgrounds.spec import MODES, check, parse, public

__all__ = [
    "KIND",
    "MODES",
    "Requested",
    "Variant",
    "check",
    "follow_up",
    "offer_generator",
    "parse",
    "public",
    "request",
    "run_task",
    "task_spec",
]

"""The serving process's collector settings (``server.tune_collector``), in a fresh interpreter:
the test process's own collector stays as it is."""

from __future__ import annotations

import json
import subprocess
import sys

from posegen.api import server

SCRIPT = """
import gc, json
from posegen.api.app import create_app
from posegen.api import server
from posegen.config import Settings
before = {"threshold": gc.get_threshold(), "frozen": gc.get_freeze_count()}
server.tune_collector()
print(json.dumps({"before": before, "threshold": gc.get_threshold(),
                  "frozen": gc.get_freeze_count(), "tracked": len(gc.get_objects())}))
"""


def test_start_up_objects_leave_the_collectors_view_and_young_collections_are_rarer() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    got = json.loads(out)
    assert got["before"]["frozen"] == 0
    assert got["threshold"][0] == server.GC_YOUNG_THRESHOLD > got["before"]["threshold"][0]
    assert got["threshold"][1:] == got["before"]["threshold"][1:]
    # The imported app is frozen: what the collector still walks is a small remainder.
    assert got["frozen"] > 50_000
    assert got["tracked"] < got["frozen"] / 10

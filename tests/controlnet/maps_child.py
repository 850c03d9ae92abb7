"""A separate process loading one map: ``python maps_child.py MODE DATA_DIR GO_FILE URL``.

Prints ``ready`` once set up, waits for GO_FILE to exist (so many children start together),
loads the URL and prints one JSON line. MODE ``stall-write`` makes the cache write hang between
writing its temp file and publishing it, so the parent can SIGKILL it mid-write.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from maps_settings import map_settings

from posegen.controlnet import MapCache
from posegen.exceptions import FetchError


def main() -> None:
    mode, data_dir, go_file, url = sys.argv[1:5]
    cache = MapCache(map_settings(Path(data_dir), fetch_timeout_seconds=10.0))
    if mode == "stall-write":
        real_fsync = os.fsync

        def stalled_fsync(fd: int) -> None:
            if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(".tmp-"):
                print("writing", flush=True)
                time.sleep(60)
            real_fsync(fd)

        os.fsync = stalled_fsync
    print("ready", flush=True)
    while not os.path.exists(go_file):
        time.sleep(0.001)
    out: dict[str, object]
    try:
        result = cache.load(url)
        assert result is not None
        out = {"outcome": result.outcome, "sha256": result.sha256}
    except FetchError as exc:
        out = {"outcome": "error", "kind": exc.kind}
    cache.close()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()

"""Exports over HTTP: on-demand requests (202, idempotent under 40 concurrent identical POSTs:
one task per format), downloads with validators, the result listing, the archive by format
(layout, 404), validation, and the generation's event stream reopened by the export tasks with
every event exactly once across reconnects."""

from __future__ import annotations

import io
import json
import threading
import zipfile
from typing import Any

import httpx
from api_helpers import Api, Keys, claim_one, problem_of, write_pose
from fastapi import FastAPI
from live_server import live_server
from sqlalchemy import Engine, func, select

from posegen import exporting, failures, queue
from posegen.config import Settings
from posegen.db.models import GenerationEvent, GenerationTask, ResultExport, UserGenerationStats
from posegen.exporting.names import slug
from posegen.queue import tasks
from posegen.storage import make_storage
from posegen.worker import task_handlers


def _finished(api: Api, keys: Keys, engine: Engine, settings: Settings, poses: int = 2) -> int:
    """A finished generation of the user: poses 1..n, two variations each, one failed."""
    pid = api("POST", "/projects", key=keys.user, json={"name": "e"}).json()["id"]
    body = {"projectId": pid, "poseIds": list(range(1, poses + 1)), "variations": 2}
    gid = int(api("POST", "/generations", key=keys.user, json=body).json()["id"])
    job = claim_one(engine, settings)
    for pose in range(1, poses + 1):
        write_pose(engine, settings, job, pose, 0)
        write_pose(engine, settings, job, pose, 1, failed=pose == poses)
    queue.finish(engine, job.id, job.lease_token)
    return gid


def _run_tasks(engine: Engine, settings: Settings) -> list[str]:
    """Run every pending export task as a worker would; returns the outcomes."""
    out = []
    store = make_storage(settings)
    while claimed := tasks.claim(engine, settings, "test-worker", 10, ["export"]):
        out += [exporting.run_task(engine, settings, store, t, threading.Event()) for t in claimed]
    return out


def _formats(settings: Settings) -> list[str]:
    return sorted(exporting.formats(settings))


def test_forty_identical_requests_queue_one_task_per_format(
    app: FastAPI, keys: Keys, library: None, engine: Engine, settings: Settings, api: Api
) -> None:
    gid = _finished(api, keys, engine, settings)
    fmts = _formats(settings)[:2]
    barrier = threading.Barrier(40)
    out: list[httpx.Response | None] = [None] * 40

    with live_server(app, settings) as (base, _port):

        def one(i: int) -> None:
            with httpx.Client(timeout=60) as c:
                barrier.wait()
                out[i] = c.post(
                    f"{base}/generations/{gid}/exports",
                    json={"formats": fmts},
                    headers={"Authorization": f"Bearer {keys.user}"},
                )

        threads = [threading.Thread(target=one, args=(i,)) for i in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    answers = [r for r in out if r is not None]
    assert len(answers) == 40 and {r.status_code for r in answers} == {202}, [
        r.text for r in answers if r.status_code != 202
    ][:3]
    queued = [f["format"] for r in answers for f in r.json()["formats"] if f["queued"]]
    assert sorted(queued) == sorted(fmts)  # each format queued by exactly one request
    with engine.connect() as conn:
        rows = conn.execute(select(GenerationTask.task_key, GenerationTask.status)).all()
        queued_events = conn.execute(
            select(func.count())
            .select_from(GenerationEvent)
            .where(GenerationEvent.generation_id == gid, GenerationEvent.kind == "task_queued")
        ).scalar_one()
    assert sorted((k, str(s)) for k, s in rows) == [(f"export:{f}", "pending") for f in fmts]
    assert queued_events == 2


def test_downloads_listing_archive_and_validation(
    keys: Keys, library: None, engine: Engine, settings: Settings, api: Api
) -> None:
    gid = _finished(api, keys, engine, settings)
    a, b, c = _formats(settings)[:3]
    table = api("GET", "/exports/formats", key=keys.user).json()
    assert [f["name"] for f in table] == _formats(settings)
    assert all({"width", "height", "fileType", "label"} <= set(f) for f in table)
    r = api("POST", f"/generations/{gid}/exports", key=keys.user, json={"formats": [a, b]})
    assert r.status_code == 202
    assert [(f["format"], f["status"], f["queued"]) for f in r.json()["formats"]] == [
        (a, "pending", True),
        (b, "pending", True),
    ]
    assert r.json()["eventsUrl"].endswith(f"/generations/{gid}/events")
    assert _run_tasks(engine, settings) == ["completed", "completed"]
    again = api("POST", f"/generations/{gid}/exports", key=keys.user, json={"formats": [a]})
    assert [(f["status"], f["queued"]) for f in again.json()["formats"]] == [("completed", False)]

    listing = api("GET", f"/generations/{gid}/results", key=keys.user).json()
    done = [x for x in listing if x["status"] == "completed"]
    assert len(done) == 3
    assert all(not x["exports"] for x in listing if x["status"] != "completed")
    for item in done:
        assert [e["format"] for e in item["exports"]] == [a, b]
    first = done[0]["exports"][0]
    got = api.client.get(first["url"], headers={"Authorization": f"Bearer {keys.user}"})
    assert got.status_code == 200 and got.headers["content-type"] == first["contentType"]
    assert len(got.content) == first["bytes"]
    assert got.headers["cache-control"].startswith("private")
    etag = got.headers["etag"]
    again_got = api.client.get(
        first["url"], headers={"Authorization": f"Bearer {keys.user}", "If-None-Match": etag}
    )
    assert again_got.status_code == 304
    missing = api.client.get(
        first["url"].replace(f"/exports/{a}", f"/exports/{c}"),
        headers={"Authorization": f"Bearer {keys.user}"},
    )
    problem_of(missing, 404)

    # The archive: one folder per format, readable unique names, 404 when nothing matches.
    z = api.client.get(
        f"/api/pose-generator/generations/{gid}/archive",
        params={"formats": f"{a},{b}"},
        headers={"Authorization": f"Bearer {keys.user}"},
    )
    assert z.status_code == 200 and z.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(z.content)).namelist()
    assert len(names) == len(set(names)) == 6
    assert {n.split("/")[0] for n in names} == {a, b}
    slugs = {
        p: slug(api("GET", f"/library/poses/{p}", key=keys.user).json()["name"], "x")
        for p in (1, 2)
    }
    expected = {f"{f}/{slugs[p]}-v{v}." for f in (a, b) for p, v in ((1, 1), (1, 2), (2, 1))}
    assert {n.rsplit(".", 1)[0] + "." for n in names} == expected, names
    assert all(n.isascii() and ".." not in n and " " not in n for n in names)
    nothing = api.client.get(
        f"/api/pose-generator/generations/{gid}/archive",
        params={"formats": c},
        headers={"Authorization": f"Bearer {keys.user}"},
    )
    problem_of(nothing, 404)

    # Unknown formats are a 422 problem naming them, at submit and on demand.
    bad = api("POST", f"/generations/{gid}/exports", key=keys.user, json={"formats": ["nope"]})
    assert problem_of(bad, 422)["type"].endswith("unknown-export-format")
    pid = api("POST", "/projects", key=keys.user, json={"name": "x"}).json()["id"]
    sub = api(
        "POST",
        "/generations",
        key=keys.user,
        json={"projectId": pid, "poseIds": [1], "exportFormats": [a, "nope"]},
    )
    assert "nope" in problem_of(sub, 422)["detail"]
    asked = api(
        "POST",
        "/generations",
        key=keys.user,
        json={"projectId": pid, "poseIds": [2], "exportFormats": [b, a, b]},
    )
    assert asked.status_code == 202 and asked.json()["exportFormats"] == [b, a]
    # Not finished yet: 409, nothing queued.
    ok = api("POST", "/generations", key=keys.user, json={"projectId": pid, "poseIds": [1]}).json()
    busy = api("POST", f"/generations/{ok['id']}/exports", key=keys.user, json={"formats": [a]})
    assert problem_of(busy, 409)["type"].endswith("generation-active")


def _events(text: str) -> list[dict[str, Any]]:
    out, current = [], {}
    for line in text.splitlines():
        if line == "":
            if "data" in current:
                out.append(current)
            current = {}
        elif not line.startswith(":"):
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "data":
                current["data"] = json.loads(value)
            elif field in ("id", "event"):
                current[field] = value
    return out


def test_export_tasks_reopen_the_ended_stream_every_event_once(
    app: FastAPI, keys: Keys, library: None, engine: Engine, settings: Settings, api: Api
) -> None:
    gid = _finished(api, keys, engine, settings, poses=1)
    fmt = _formats(settings)[0]
    auth = {"Authorization": f"Bearer {keys.user}"}
    seen: list[dict[str, Any]] = []
    with (
        live_server(app, settings) as (base, _port),
        httpx.Client(base_url=base, headers=auth, timeout=30) as client,
    ):
        first = client.get(f"/generations/{gid}/events")
        seen += _events(first.text)  # the whole history; the stream ended at "completed"
        assert seen[-1]["event"] == "partial"
        ended = client.get(f"/generations/{gid}/events", headers={"Last-Event-ID": seen[-1]["id"]})
        assert ended.status_code == 204

        client.post(f"/generations/{gid}/exports", json={"formats": [fmt]}).raise_for_status()
        # Reopened: the client reconnects after the last event it saw and gets the rest,
        # live, until the tasks settle.
        with client.stream(
            "GET", f"/generations/{gid}/events", headers={"Last-Event-ID": seen[-1]["id"]}
        ) as r:
            assert r.status_code == 200
            lines = r.iter_lines()
            buf: list[str] = []
            for line in lines:
                buf.append(line)
                if line == "" and _events("\n".join(buf) + "\n"):
                    break
            assert [e["event"] for e in _events("\n".join(buf) + "\n")] == ["task_queued"]
            assert _run_tasks(engine, settings) == ["completed"]
            buf += list(lines)
        seen += _events("\n".join(buf) + "\n")
        done = client.get(f"/generations/{gid}/events", headers={"Last-Event-ID": seen[-1]["id"]})
        assert done.status_code == 204

    with engine.connect() as conn:
        expected = [
            (int(i), str(k))
            for i, k in conn.execute(
                select(GenerationEvent.id, GenerationEvent.kind)
                .where(GenerationEvent.generation_id == gid)
                .order_by(GenerationEvent.id)
            )
        ]
    assert [(int(e["id"]), e["event"]) for e in seen] == expected
    assert [k for _, k in expected][-4:] == [
        "task_queued",
        "task_started",
        "task_completed",
        "tasks_settled",
    ]
    completed = seen[-2]["data"]["data"]
    assert completed["format"] == fmt and completed["exports"] == 1 and completed["open"] == 0


def test_deleting_a_generation_removes_its_exports_rows_bytes_and_quota(
    keys: Keys, library: None, engine: Engine, settings: Settings, api: Api
) -> None:
    gid = _finished(api, keys, engine, settings)
    fmt = _formats(settings)[0]

    def stored_bytes() -> int:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    select(UserGenerationStats.result_bytes).where(
                        UserGenerationStats.user_id == keys.user_id
                    )
                ).scalar_one()
            )

    before = stored_bytes()
    api("POST", f"/generations/{gid}/exports", key=keys.user, json={"formats": [fmt]})
    assert _run_tasks(engine, settings) == ["completed"]
    with engine.connect() as conn:
        paths = [
            str(p)
            for p in conn.execute(
                select(ResultExport.path).where(ResultExport.generation_id == gid)
            ).scalars()
        ]
        exported = int(
            conn.execute(
                select(func.sum(ResultExport.bytes)).where(ResultExport.generation_id == gid)
            ).scalar_one()
        )
    assert len(paths) == 3 and stored_bytes() == before + exported
    root = settings.effective_results_dir
    assert all((root / p).is_file() for p in paths)

    assert api("DELETE", f"/generations/{gid}", key=keys.user).status_code == 204
    assert not any((root / p).exists() for p in paths)
    with engine.connect() as conn:
        for table in (ResultExport, GenerationTask):
            left = conn.execute(
                select(func.count()).select_from(table).where(table.generation_id == gid)
            ).scalar_one()
            assert left == 0
    assert stored_bytes() == 0


def test_a_format_gone_from_the_table_fails_its_task_with_a_sentence(
    keys: Keys, library: None, engine: Engine, settings: Settings, api: Api
) -> None:
    gid = _finished(api, keys, engine, settings, poses=1)
    # Queued while an operator's format existed; the table no longer has it when it runs.
    tasks.enqueue(
        engine, settings, gid, [tasks.TaskSpec("export", "export:gone", {"format": "gone"})]
    )
    assert _run_tasks(engine, settings) == ["failed"]
    with engine.connect() as conn:
        row = conn.execute(
            select(GenerationTask.status, GenerationTask.attempts, GenerationTask.error_message)
        ).one()
        kinds = [
            str(k)
            for k in conn.execute(
                select(GenerationEvent.kind)
                .where(GenerationEvent.generation_id == gid)
                .order_by(GenerationEvent.id)
            ).scalars()
        ]
    assert (str(row.status), row.attempts) == ("failed", 1)
    assert row.error_message == failures.SENTENCES["unknown-export-format"]
    assert kinds[-3:] == ["task_started", "task_failed", "tasks_settled"]


def test_deleting_a_generation_while_its_export_task_runs_leaves_no_files(
    keys: Keys,
    library: None,
    engine: Engine,
    settings: Settings,
    api: Api,
    monkeypatch: Any,
) -> None:
    gid = _finished(api, keys, engine, settings)
    fmt = _formats(settings)[0]
    api("POST", f"/generations/{gid}/exports", key=keys.user, json={"formats": [fmt]})
    (task,) = tasks.claim(engine, settings, "test-worker", 1, ["export"])
    store = make_storage(settings)
    save = store.save_export
    folder = settings.effective_results_dir / f"{gid // 1000:06d}" / str(gid)

    def delete_then_save(*args: Any) -> str:
        # The owner deletes the generation (rows, then its folder) just before the task
        # stores an export: the store makes the folder again for a file no row will name.
        assert api("DELETE", f"/generations/{gid}", key=keys.user).status_code == 204
        assert not folder.exists()
        return save(*args)

    monkeypatch.setattr(store, "save_export", delete_then_save)
    # Through the worker's dispatch, which cleans up after any kind of task that lost its lease.
    outcome = task_handlers.run(engine, settings, store, task, threading.Event())
    assert outcome == "lease-lost"
    assert not folder.exists()

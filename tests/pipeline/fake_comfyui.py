"""A local stand-in for a ComfyUI server that speaks its HTTP + websocket protocol.

Real HTTP (uvicorn on 127.0.0.1, an ephemeral port) and a real websocket: ``POST /upload/image``
(multipart), ``POST /prompt`` (400 with ``node_errors`` for an invalid workflow), ``GET
/history/{id}``, ``GET /view``, ``/ws?clientId=`` with ``execution_start`` / ``executing`` /
``progress`` / ``executed`` / ``execution_success`` / ``execution_error`` messages, ``POST /queue``
and ``POST /interrupt``. Its "model" blends the uploaded subject and pose map and tints by seed,
so outputs depend on every input. ``mode`` switches behaviour: ``ok``, ``no-ws`` (refuses the
websocket upgrade: clients must poll), ``exec-error``, ``hang``, ``http-500``.
"""

from __future__ import annotations

import asyncio
import io
import socket
import threading
import time
import uuid
from collections import Counter
from typing import Any

import uvicorn
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

KNOWN_NODES = {
    "CheckpointLoaderSimple",
    "CLIPTextEncode",
    "LoadImage",
    "ImageScale",
    "VAEEncode",
    "ControlNetLoader",
    "ControlNetApply",
    "KSampler",
    "VAEDecode",
    "SaveImage",
    "EmptyLatentImage",
}


class FakeComfyUI:
    """Start with ``with FakeComfyUI() as server:``; ``server.url`` is its base URL."""

    def __init__(self, mode: str = "ok", delay: float = 0.05) -> None:
        self.mode = mode
        self.delay = delay
        self.inputs: dict[str, bytes] = {}
        self.outputs: dict[str, bytes] = {}
        self.history: dict[str, dict[str, Any]] = {}
        self.prompts: list[dict[str, Any]] = []
        self.calls: Counter[str] = Counter()
        self._clients: dict[str, WebSocket] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        app = Starlette(
            routes=[
                Route("/upload/image", self._upload, methods=["POST"]),
                Route("/prompt", self._prompt, methods=["POST"]),
                Route("/history/{prompt_id}", self._history, methods=["GET"]),
                Route("/view", self._view, methods=["GET"]),
                Route("/queue", self._queue, methods=["POST"]),
                Route("/interrupt", self._interrupt, methods=["POST"]),
                WebSocketRoute("/ws", self._ws),
            ]
        )
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", ws="websockets-sansio", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> FakeComfyUI:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake ComfyUI did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()

    def _serve(self) -> None:
        self._server.run(sockets=[self._sock])

    # --- routes ----------------------------------------------------------------------------
    async def _upload(self, request: Request) -> Response:
        self.calls["upload"] += 1
        if self.mode == "http-500":
            return JSONResponse({"error": "boom"}, status_code=500)
        async with request.form() as form:
            upload: Any = form["image"]
            self.inputs[upload.filename] = await upload.read()
        return JSONResponse({"name": upload.filename, "subfolder": "", "type": "input"})

    async def _prompt(self, request: Request) -> Response:
        self.calls["prompt"] += 1
        body = await request.json()
        workflow, client_id = body["prompt"], body.get("client_id", "")
        node_errors = self._validate(workflow)
        if node_errors:
            return JSONResponse(
                {
                    "error": {
                        "type": "prompt_outputs_failed_validation",
                        "message": "Prompt outputs failed validation",
                        "details": "",
                    },
                    "node_errors": node_errors,
                },
                status_code=400,
            )
        prompt_id = str(uuid.uuid4())
        self.prompts.append(workflow)
        self._loop = asyncio.get_running_loop()
        asyncio.get_running_loop().create_task(self._execute(prompt_id, workflow, client_id))
        return JSONResponse(
            {"prompt_id": prompt_id, "number": len(self.prompts), "node_errors": {}}
        )

    async def _history(self, request: Request) -> Response:
        self.calls["history"] += 1
        prompt_id = request.path_params["prompt_id"]
        entry = self.history.get(prompt_id)
        return JSONResponse({prompt_id: entry} if entry else {})

    async def _view(self, request: Request) -> Response:
        self.calls["view"] += 1
        name = request.query_params.get("filename", "")
        if request.query_params.get("type") != "output" or name not in self.outputs:
            return Response(status_code=404)
        return Response(self.outputs[name], media_type="image/png")

    async def _queue(self, request: Request) -> Response:
        self.calls["queue-delete"] += 1
        return JSONResponse({})

    async def _interrupt(self, request: Request) -> Response:
        self.calls["interrupt"] += 1
        return JSONResponse({})

    async def _ws(self, ws: WebSocket) -> None:
        if self.mode == "no-ws":
            self.calls["ws-refused"] += 1
            await ws.close(code=1008)  # before accept: the upgrade is refused with HTTP 403
            return
        self.calls["ws"] += 1
        client_id = ws.query_params.get("clientId", "")
        await ws.accept()
        self._clients[client_id] = ws
        await ws.send_json(
            {
                "type": "status",
                "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": client_id},
            }
        )
        try:
            while True:
                await ws.receive_text()
        except WebSocketDisconnect:
            self._clients.pop(client_id, None)

    # --- execution -------------------------------------------------------------------------
    def _validate(self, workflow: dict[str, Any]) -> dict[str, Any]:
        errors: dict[str, Any] = {}
        for node_id, node in workflow.items():
            kind = node.get("class_type")
            problem = None
            if kind not in KNOWN_NODES:
                problem = f"node type {kind!r} does not exist"
            elif kind == "LoadImage" and node["inputs"].get("image") not in self.inputs:
                problem = f"Invalid image file: {node['inputs'].get('image')}"
            if problem:
                errors[node_id] = {
                    "errors": [
                        {"type": "value_not_in_list", "message": problem, "details": problem}
                    ],
                    "dependent_outputs": [],
                    "class_type": kind,
                }
        return errors

    async def _send(self, client_id: str, message: dict[str, Any]) -> None:
        ws = self._clients.get(client_id)
        if ws is not None:
            try:
                await ws.send_json(message)
            except (RuntimeError, WebSocketDisconnect):
                self._clients.pop(client_id, None)

    async def _execute(self, prompt_id: str, workflow: dict[str, Any], client_id: str) -> None:
        await self._send(client_id, {"type": "execution_start", "data": {"prompt_id": prompt_id}})
        for node_id in workflow:
            await self._send(
                client_id, {"type": "executing", "data": {"node": node_id, "prompt_id": prompt_id}}
            )
        if self.mode == "hang":
            return
        await self._send(
            client_id, {"type": "progress", "data": {"value": 1, "max": 2, "prompt_id": prompt_id}}
        )
        await asyncio.sleep(self.delay)
        if self.mode == "exec-error":
            data = {
                "prompt_id": prompt_id,
                "node_id": "10",
                "node_type": "KSampler",
                "exception_message": "CUDA out of memory (fake)",
                "exception_type": "RuntimeError",
            }
            self.history[prompt_id] = {
                "prompt": [0, prompt_id, workflow, {}, ["12"]],
                "outputs": {},
                "status": {
                    "status_str": "error",
                    "completed": False,
                    "messages": [["execution_error", data]],
                },
            }
            await self._send(client_id, {"type": "execution_error", "data": data})
            return
        name = f"posegen_{len(self.outputs) + 1:05d}_.png"
        self.outputs[name] = self._render(workflow)
        images = [{"filename": name, "subfolder": "", "type": "output"}]
        self.history[prompt_id] = {
            "prompt": [0, prompt_id, workflow, {}, ["12"]],
            "outputs": {"12": {"images": images}},
            "status": {"status_str": "success", "completed": True, "messages": []},
        }
        await self._send(
            client_id,
            {
                "type": "executed",
                "data": {"node": "12", "output": {"images": images}, "prompt_id": prompt_id},
            },
        )
        await self._send(client_id, {"type": "execution_success", "data": {"prompt_id": prompt_id}})
        await self._send(
            client_id, {"type": "executing", "data": {"node": None, "prompt_id": prompt_id}}
        )

    def _render(self, workflow: dict[str, Any]) -> bytes:
        by_type: dict[str, list[dict[str, Any]]] = {}
        for node in workflow.values():
            by_type.setdefault(node["class_type"], []).append(node["inputs"])
        loads = [
            Image.open(io.BytesIO(self.inputs[n["image"]])).convert("RGB")
            for n in by_type.get("LoadImage", [])
        ]
        sampler = by_type.get("KSampler", [{}])[0]
        scale = by_type.get("ImageScale", [{}])[0]
        size = (int(scale.get("width", 64)), int(scale.get("height", 64)))
        out = Image.new("RGB", size, (int(sampler.get("seed", 0)) % 256, 0, 0))
        for img in loads:
            out = Image.blend(out, img.resize(size), 0.5)
        buf = io.BytesIO()
        out.save(buf, format="PNG")
        return buf.getvalue()

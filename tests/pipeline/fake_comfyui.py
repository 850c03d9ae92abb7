"""A local stand-in for a ComfyUI server that speaks its HTTP + websocket protocol.

Real HTTP (uvicorn on 127.0.0.1, an ephemeral port) and a real websocket. Its "model" blends the
uploaded images and tints by seed, so outputs depend on every input. Where it matters it behaves
like the real server. "Observed" below means seen against a real ComfyUI 0.8.0 server (CPU, a
workflow needing no model files; issue #19); "source" means taken from ComfyUI's own code
(``execution.py`` ``validate_prompt`` / ``validate_inputs`` / ``PromptQueue``, ``server.py``
``post_prompt`` / ``get_queue`` / ``system_stats``), whose shapes 0.8.0 still serves:

- ``POST /prompt`` (observed, 0.8.0): every output node (``SaveImage``, ``PreviewImage``) is
  validated on its own; when some are valid the answer is **200 with a non-empty**
  ``node_errors`` and only the valid outputs run (partial acceptance); when none is, a 400
  ``prompt_outputs_failed_validation`` with ``node_errors``. Each error has ``type``,
  ``message`` and ``details`` (``"Value 7.5 bigger than max of 1.0"`` / ``"strength"``).
- An unknown node class (source): 400 ``invalid_prompt``, "Cannot execute because node X does
  not exist.", ``details`` "Node ID '#N'", empty ``node_errors``.
- ``execution_error`` over the websocket (source; 0.8.0 sends it the same way): ``node_id``,
  ``node_type``, ``executed``, ``exception_message``, ``exception_type``, ``traceback``; the
  history entry ends with ``status_str: "error"`` and the message in ``messages``.
- ``SaveImage`` outputs are ``type: "output"``, ``PreviewImage`` ones ``type: "temp"`` (observed).
- ``GET /queue`` lists ``queue_running`` / ``queue_pending`` items as ``[number, prompt_id,
  prompt, extra_data, outputs]`` (source); ``GET /object_info`` gives each class's inputs, a
  model list either as the classic combo ``[[names...], {}]`` or as ``["COMBO", {"options":
  [...]}]``, the form of nodes written against ComfyUI's newer node API (source; both are
  served by 0.8.0-era servers); ``GET /system_stats`` (source).
- A restart (:meth:`FakeComfyUI.restart`, observed on 0.8.0: killed after 20 of 132 images,
  answering again 15.5 s later) forgets every queued prompt, its history and the uploads, and
  refuses connections while down.
- ``POST /upload/mask`` (source, ``server.py`` ``upload_mask``): a form with the ``image`` file
  and ``original_ref`` (JSON ``{"filename", "subfolder", "type"}`` of an earlier upload); the
  server opens that original, replaces its alpha with the uploaded image's alpha channel and
  saves the result under the uploaded file's name. An original it cannot find saves nothing
  (the answer is still 200 with the name). ``LoadImage`` gives that file's IMAGE and its MASK
  (1 - alpha; all zeros without an alpha channel).
- Links are validated as ``validate_inputs`` does (source): the linked output's type must be the
  input's (``return_type_mismatch``, "Return type mismatch between linked nodes", details
  ``"mask, received_type(IMAGE) mismatch input_type(MASK)"``), per the node's ``RETURN_TYPES``.
- ``VAEEncodeForInpaint`` (source) crops the image to multiples of 8 (centred); the fake's
  "model" repaints where the mask is set with a colour from the seed and the prompt, and returns
  the kept pixels with their lowest bit flipped, as a VAE round trip never gives them back
  exactly.
- ``history_delay`` makes ``/history`` slow, as a busy server answers it late (asked for by
  issue #19; not a version-specific behaviour).

``mode``: ``ok``, ``no-ws`` (refuses the websocket upgrade: clients must poll), ``exec-error``,
``hang``, ``http-500``.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import socket
import threading
import time
import uuid
from collections import Counter
from typing import Any

import numpy as np
import uvicorn
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

COMFYUI_VERSION = "0.8.0"
CHECKPOINTS = ["v1-5-pruned-emaonly.safetensors"]
CONTROLNETS = ["control_v11p_sd15_openpose.pth"]

#: Input specs per node class, in /object_info's shape: (type, options). A list type is a combo.
_SPECS: dict[str, dict[str, Any]] = {
    "CheckpointLoaderSimple": {"ckpt_name": "checkpoints"},
    "CLIPTextEncode": {"text": ["STRING", {"multiline": True}], "clip": ["CLIP"]},
    "LoadImage": {"image": "inputs"},
    "ImageScale": {
        "image": ["IMAGE"],
        "upscale_method": [["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]],
        "width": ["INT", {"default": 512, "min": 0, "max": 16384}],
        "height": ["INT", {"default": 512, "min": 0, "max": 16384}],
        "crop": [["disabled", "center"]],
    },
    "ImageAddNoise": {
        "image": ["IMAGE"],
        "seed": ["INT", {"min": 0, "max": 0xFFFFFFFFFFFFFFFF}],
        "strength": ["FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0}],
    },
    "VAEEncode": {"pixels": ["IMAGE"], "vae": ["VAE"]},
    "ControlNetLoader": {"control_net_name": "controlnets"},
    "ControlNetApply": {
        "conditioning": ["CONDITIONING"],
        "control_net": ["CONTROL_NET"],
        "image": ["IMAGE"],
        "strength": ["FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0}],
    },
    "KSampler": {
        "model": ["MODEL"],
        "positive": ["CONDITIONING"],
        "negative": ["CONDITIONING"],
        "latent_image": ["LATENT"],
        "seed": ["INT", {"min": 0, "max": 0xFFFFFFFFFFFFFFFF}],
        "steps": ["INT", {"default": 20, "min": 1, "max": 10000}],
        "cfg": ["FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0}],
        "sampler_name": [["euler", "euler_ancestral", "dpmpp_2m"]],
        "scheduler": [["normal", "karras"]],
        "denoise": ["FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0}],
    },
    "VAEEncodeForInpaint": {
        "pixels": ["IMAGE"],
        "vae": ["VAE"],
        "mask": ["MASK"],
        "grow_mask_by": ["INT", {"default": 6, "min": 0, "max": 64, "step": 1}],
    },
    "VAEDecode": {"samples": ["LATENT"], "vae": ["VAE"]},
    "SaveImage": {"images": ["IMAGE"], "filename_prefix": ["STRING", {"default": "ComfyUI"}]},
    "PreviewImage": {"images": ["IMAGE"]},
    "EmptyLatentImage": {
        "width": ["INT", {"min": 16, "max": 16384}],
        "height": ["INT", {"min": 16, "max": 16384}],
        "batch_size": ["INT", {"min": 1, "max": 4096}],
    },
}
#: Each class's RETURN_TYPES: what a link ``[node_id, index]`` to it carries.
_RETURNS: dict[str, tuple[str, ...]] = {
    "CheckpointLoaderSimple": ("MODEL", "CLIP", "VAE"),
    "CLIPTextEncode": ("CONDITIONING",),
    "LoadImage": ("IMAGE", "MASK"),
    "ImageScale": ("IMAGE",),
    "ImageAddNoise": ("IMAGE",),
    "VAEEncode": ("LATENT",),
    "VAEEncodeForInpaint": ("LATENT",),
    "ControlNetLoader": ("CONTROL_NET",),
    "ControlNetApply": ("CONDITIONING",),
    "KSampler": ("LATENT",),
    "VAEDecode": ("IMAGE",),
    "SaveImage": (),
    "PreviewImage": (),
    "EmptyLatentImage": ("LATENT",),
}
KNOWN_NODES = set(_SPECS)
assert set(_RETURNS) == KNOWN_NODES
_OUTPUT_NODES = {"SaveImage", "PreviewImage"}


class FakeComfyUI:
    """Start with ``with FakeComfyUI() as server:``; ``server.url`` is its base URL."""

    def __init__(self, mode: str = "ok", delay: float = 0.05) -> None:
        self.mode = mode
        self.delay = delay
        #: Seconds ``/history`` waits before it answers.
        self.history_delay = 0.0
        self.checkpoints = list(CHECKPOINTS)
        self.controlnets = list(CONTROLNETS)
        self.inputs: dict[str, bytes] = {}
        self.outputs: dict[str, bytes] = {}
        self.history: dict[str, dict[str, Any]] = {}
        self.running: dict[str, list[Any]] = {}
        self.prompts: list[dict[str, Any]] = []
        self.calls: Counter[str] = Counter()
        #: Images made, over every restart (a restart forgets ``outputs``, not this).
        self.made = 0
        self._epoch = 0
        self._clients: dict[str, WebSocket] = {}
        self._app = Starlette(
            routes=[
                Route("/upload/image", self._upload, methods=["POST"]),
                Route("/upload/mask", self._upload_mask, methods=["POST"]),
                Route("/prompt", self._prompt, methods=["POST"]),
                Route("/history/{prompt_id}", self._history, methods=["GET"]),
                Route("/view", self._view, methods=["GET"]),
                Route("/queue", self._queue, methods=["POST"]),
                Route("/queue", self._get_queue, methods=["GET"]),
                Route("/interrupt", self._interrupt, methods=["POST"]),
                Route("/object_info", self._object_info, methods=["GET"]),
                Route("/system_stats", self._system_stats, methods=["GET"]),
                WebSocketRoute("/ws", self._ws),
            ]
        )
        self._sock = self._bind(0)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # --- life cycle ----------------------------------------------------------------------------
    def __enter__(self) -> FakeComfyUI:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @staticmethod
    def _bind(port: int) -> socket.socket:
        sock = socket.socket()
        # The same port again right after a stop (connections of the last run in TIME_WAIT).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        return sock

    def start(self) -> None:
        """Serve (again) on the same port."""
        if self._thread is not None:
            return
        if self._sock.fileno() == -1:
            self._sock = self._bind(self.port)
        config = uvicorn.Config(
            self._app,
            log_level="critical",
            ws="websockets-sansio",
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        self._server = server
        sock = self._sock
        self._thread = threading.Thread(target=lambda: server.run(sockets=[sock]), daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fake ComfyUI did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        """Like killing the process: connections are refused until :meth:`start`, and what the
        server held in memory (queue, history, uploads) is gone."""
        if self._server is None or self._thread is None:
            return
        self._epoch += 1
        self._server.should_exit = True
        self._thread.join(15)
        self._sock.close()
        self._server = self._thread = None
        self._clients.clear()
        self.running.clear()
        self.history.clear()
        self.inputs.clear()
        self.outputs.clear()

    def restart(self, down_seconds: float) -> None:
        """Stop, stay down ``down_seconds``, start again."""
        self.stop()
        time.sleep(down_seconds)
        self.start()

    # --- routes ----------------------------------------------------------------------------
    async def _upload(self, request: Request) -> Response:
        self.calls["upload"] += 1
        if self.mode == "http-500":
            return JSONResponse({"error": "boom"}, status_code=500)
        async with request.form() as form:
            upload: Any = form["image"]
            self.inputs[upload.filename] = await upload.read()
        return JSONResponse({"name": upload.filename, "subfolder": "", "type": "input"})

    async def _upload_mask(self, request: Request) -> Response:
        self.calls["upload-mask"] += 1
        if self.mode == "http-500":
            return JSONResponse({"error": "boom"}, status_code=500)
        async with request.form() as form:
            upload: Any = form["image"]
            data = await upload.read()
            ref = json.loads(str(form["original_ref"]))
        sub = ref.get("subfolder") or ""
        original = self.inputs.get(f"{sub}/{ref['filename']}" if sub else ref["filename"])
        if original is not None:
            with Image.open(io.BytesIO(original)) as im:
                combined = im.convert("RGBA")
            with Image.open(io.BytesIO(data)) as im:
                combined.putalpha(im.convert("RGBA").getchannel("A"))
            buf = io.BytesIO()
            combined.save(buf, format="PNG")
            self.inputs[upload.filename] = buf.getvalue()
        return JSONResponse({"name": upload.filename, "subfolder": "", "type": "input"})

    async def _prompt(self, request: Request) -> Response:
        self.calls["prompt"] += 1
        body = await request.json()
        workflow, client_id = body["prompt"], body.get("client_id", "")
        ok, error, good, node_errors = self._validate(workflow)
        if not ok:
            return JSONResponse({"error": error, "node_errors": node_errors}, status_code=400)
        prompt_id = str(uuid.uuid4())
        self.prompts.append(workflow)
        number = len(self.prompts)
        self.running[prompt_id] = [number, prompt_id, workflow, {"client_id": client_id}, good]
        asyncio.get_running_loop().create_task(
            self._execute(self._epoch, prompt_id, workflow, client_id, good)
        )
        return JSONResponse({"prompt_id": prompt_id, "number": number, "node_errors": node_errors})

    async def _history(self, request: Request) -> Response:
        self.calls["history"] += 1
        if self.history_delay:
            await asyncio.sleep(self.history_delay)
        prompt_id = request.path_params["prompt_id"]
        entry = self.history.get(prompt_id)
        return JSONResponse({prompt_id: entry} if entry else {})

    async def _get_queue(self, request: Request) -> Response:
        self.calls["queue-get"] += 1
        return JSONResponse({"queue_running": list(self.running.values()), "queue_pending": []})

    async def _view(self, request: Request) -> Response:
        self.calls["view"] += 1
        name = request.query_params.get("filename", "")
        if request.query_params.get("type") not in ("output", "temp") or name not in self.outputs:
            return Response(status_code=404)
        return Response(self.outputs[name], media_type="image/png")

    async def _queue(self, request: Request) -> Response:
        self.calls["queue-delete"] += 1
        body = await request.json()
        for prompt_id in body.get("delete", []):
            self.running.pop(prompt_id, None)
        return Response(status_code=200)

    async def _interrupt(self, request: Request) -> Response:
        self.calls["interrupt"] += 1
        return Response(status_code=200)

    async def _object_info(self, request: Request) -> Response:
        self.calls["object_info"] += 1
        out: dict[str, Any] = {}
        for name, spec in _SPECS.items():
            required: dict[str, Any] = {}
            for key, value in spec.items():
                if value == "checkpoints":  # the old combo form: [[names...], {}]
                    required[key] = [list(self.checkpoints), {}]
                elif value == "controlnets":  # the newer form
                    required[key] = ["COMBO", {"options": list(self.controlnets)}]
                elif value == "inputs":
                    required[key] = [sorted(self.inputs), {"image_upload": True}]
                else:
                    required[key] = value
            out[name] = {
                "input": {"required": required},
                "name": name,
                "output_node": name in _OUTPUT_NODES,
            }
        return JSONResponse(out)

    async def _system_stats(self, request: Request) -> Response:
        self.calls["system_stats"] += 1
        return JSONResponse(
            {"system": {"comfyui_version": COMFYUI_VERSION, "os": "posix"}, "devices": []}
        )

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

    # --- validation, as execution.validate_prompt ------------------------------------------
    def _validate(
        self, workflow: dict[str, Any]
    ) -> tuple[bool, dict[str, Any] | None, list[str], dict[str, Any]]:
        outputs = []
        for node_id, node in workflow.items():
            kind = node.get("class_type")
            if kind not in KNOWN_NODES:
                error = {
                    "type": "invalid_prompt",
                    "message": f"Cannot execute because node {kind} does not exist.",
                    "details": f"Node ID '#{node_id}'",
                    "extra_info": {},
                }
                return False, error, [], {}
            if kind in _OUTPUT_NODES:
                outputs.append(node_id)
        if not outputs:
            error = {
                "type": "prompt_no_outputs",
                "message": "Prompt has no outputs",
                "details": "",
                "extra_info": {},
            }
            return False, error, [], {}
        checked: dict[str, list[dict[str, Any]]] = {}
        good: list[str] = []
        node_errors: dict[str, Any] = {}
        lines: list[str] = []
        for out in outputs:
            bad = self._upstream_errors(workflow, out, checked)
            if not bad:
                good.append(out)
                continue
            for node_id in bad:
                reasons = checked[node_id]
                lines += [f"{r['message']}: {r['details']}" for r in reasons]
                entry = node_errors.setdefault(
                    node_id,
                    {
                        "errors": reasons,
                        "dependent_outputs": [],
                        "class_type": workflow[node_id]["class_type"],
                    },
                )
                entry["dependent_outputs"].append(out)
        if not good:
            error = {
                "type": "prompt_outputs_failed_validation",
                "message": "Prompt outputs failed validation",
                "details": "\n".join(lines),
                "extra_info": {},
            }
            return False, error, [], node_errors
        return True, None, good, node_errors

    def _upstream_errors(
        self, workflow: dict[str, Any], node_id: str, checked: dict[str, list[dict[str, Any]]]
    ) -> list[str]:
        """Ids of the nodes feeding ``node_id`` (itself included) that have errors."""
        if node_id not in checked:
            checked[node_id] = self._node_errors(workflow, workflow[node_id])
        bad = [node_id] if checked[node_id] else []
        for value in workflow[node_id]["inputs"].values():
            if isinstance(value, list) and len(value) == 2 and value[0] in workflow:
                bad += [
                    b for b in self._upstream_errors(workflow, value[0], checked) if b not in bad
                ]
        return bad

    def _node_errors(self, workflow: dict[str, Any], node: dict[str, Any]) -> list[dict[str, Any]]:
        errors: list[dict[str, Any]] = []
        for name, spec in _SPECS[node["class_type"]].items():
            value = node["inputs"].get(name)
            if value is None:
                errors.append(
                    {
                        "type": "required_input_missing",
                        "message": "Required input is missing",
                        "details": name,
                        "extra_info": {"input_name": name},
                    }
                )
                continue
            if isinstance(value, list):
                error = self._link_error(workflow, name, spec, value)
                if error is not None:
                    errors.append(error)
                continue
            choices = (
                {
                    "checkpoints": self.checkpoints,
                    "controlnets": self.controlnets,
                    "inputs": list(self.inputs),
                }.get(spec)
                if isinstance(spec, str)
                else (spec[0] if isinstance(spec[0], list) else None)
            )
            if choices is not None and value not in choices:
                if spec == "inputs":  # LoadImage validates with its own VALIDATE_INPUTS
                    message, details = (
                        "Custom validation failed for node",
                        f"image - Invalid image file: {value}",
                    )
                    kind = "custom_validation_failed"
                else:
                    message, details = "Value not in list", f"{name}: '{value}' not in {choices}"
                    kind = "value_not_in_list"
                errors.append(
                    {"type": kind, "message": message, "details": details, "extra_info": {}}
                )
                continue
            limits = spec[1] if isinstance(spec, list) and len(spec) > 1 else {}
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if "min" in limits and value < limits["min"]:
                    errors.append(
                        {
                            "type": "value_smaller_than_min",
                            "message": f"Value {value} smaller than min of {limits['min']}",
                            "details": name,
                            "extra_info": {"input_name": name, "received_value": value},
                        }
                    )
                elif "max" in limits and value > limits["max"]:
                    errors.append(
                        {
                            "type": "value_bigger_than_max",
                            "message": f"Value {value} bigger than max of {limits['max']}",
                            "details": name,
                            "extra_info": {"input_name": name, "received_value": value},
                        }
                    )
        return errors

    @staticmethod
    def _link_error(
        workflow: dict[str, Any], name: str, spec: Any, link: list[Any]
    ) -> dict[str, Any] | None:
        """A link's error as ``validate_inputs`` reports it, or None."""
        source = workflow.get(link[0]) if len(link) == 2 else None
        returns = _RETURNS.get(source["class_type"], ()) if isinstance(source, dict) else ()
        if not isinstance(link[1], int) or not 0 <= link[1] < len(returns):
            return {
                "type": "bad_linked_input",
                "message": "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                "details": name,
                "extra_info": {"input_name": name, "received_value": link},
            }
        received = returns[link[1]]
        wanted = spec[0] if isinstance(spec, list) and isinstance(spec[0], str) else None
        if wanted is None or received == wanted:
            return None
        return {
            "type": "return_type_mismatch",
            "message": "Return type mismatch between linked nodes",
            "details": f"{name}, received_type({received}) mismatch input_type({wanted})",
            "extra_info": {"input_name": name, "received_type": received, "linked_node": link},
        }

    # --- execution -------------------------------------------------------------------------
    async def _send(self, client_id: str, message: dict[str, Any]) -> None:
        ws = self._clients.get(client_id)
        if ws is not None:
            try:
                await ws.send_json(message)
            except (RuntimeError, WebSocketDisconnect):
                self._clients.pop(client_id, None)

    async def _execute(
        self, epoch: int, prompt_id: str, workflow: dict[str, Any], client_id: str, good: list[str]
    ) -> None:
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
        if epoch != self._epoch or prompt_id not in self.running:
            return  # the server restarted (or the prompt was deleted): the work is lost
        item = self.running.pop(prompt_id)
        if self.mode == "exec-error":
            data = {
                "prompt_id": prompt_id,
                "node_id": "10",
                "node_type": "KSampler",
                "executed": ["1", "2", "3"],
                "exception_message": "CUDA out of memory (fake)",
                "exception_type": "torch.OutOfMemoryError",
                "traceback": ['  File "execution.py", line 1, in execute\n'],
                "current_inputs": {},
                "current_outputs": {},
                "timestamp": int(time.time() * 1000),
            }
            self.history[prompt_id] = {
                "prompt": item,
                "outputs": {},
                "status": {
                    "status_str": "error",
                    "completed": False,
                    "messages": [["execution_error", data]],
                },
            }
            await self._send(client_id, {"type": "execution_error", "data": data})
            return
        outputs: dict[str, Any] = {}
        for out in good:
            kind = "temp" if workflow[out]["class_type"] == "PreviewImage" else "output"
            self.made += 1
            name = f"posegen_{self.made:05d}_.png"
            self.outputs[name] = self._render(workflow)
            images = [{"filename": name, "subfolder": "", "type": kind}]
            outputs[out] = {"images": images}
            await self._send(
                client_id,
                {
                    "type": "executed",
                    "data": {"node": out, "output": {"images": images}, "prompt_id": prompt_id},
                },
            )
        self.history[prompt_id] = {
            "prompt": item,
            "outputs": outputs,
            "status": {"status_str": "success", "completed": True, "messages": []},
        }
        await self._send(client_id, {"type": "execution_success", "data": {"prompt_id": prompt_id}})
        await self._send(
            client_id, {"type": "executing", "data": {"node": None, "prompt_id": prompt_id}}
        )

    def _render(self, workflow: dict[str, Any]) -> bytes:
        by_type: dict[str, list[dict[str, Any]]] = {}
        for node in workflow.values():
            by_type.setdefault(node["class_type"], []).append(node["inputs"])
        if "VAEEncodeForInpaint" in by_type:
            return self._render_inpaint(workflow, by_type)
        loads = [
            Image.open(io.BytesIO(self.inputs[n["image"]])).convert("RGB")
            for n in by_type.get("LoadImage", [])
            if n["image"] in self.inputs
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

    def _render_inpaint(
        self, workflow: dict[str, Any], by_type: dict[str, list[dict[str, Any]]]
    ) -> bytes:
        encode = by_type["VAEEncodeForInpaint"][0]
        pixels = workflow[encode["pixels"][0]]["inputs"]
        masks = workflow[encode["mask"][0]]["inputs"]
        with Image.open(io.BytesIO(self.inputs[pixels["image"]])) as im:
            rgb = np.asarray(im.convert("RGB"), dtype=np.int16)
        with Image.open(io.BytesIO(self.inputs[masks["image"]])) as im:
            # LoadImage's MASK: 1 - alpha; no alpha channel: nothing to repaint.
            alpha = (
                np.asarray(im.getchannel("A"), dtype=np.float32) / 255.0
                if "A" in im.getbands()
                else np.ones(im.size[::-1], dtype=np.float32)
            )
        height, width = rgb.shape[:2]
        h8, w8 = height // 8 * 8, width // 8 * 8
        y0, x0 = (height % 8) // 2, (width % 8) // 2
        rgb = rgb[y0 : y0 + h8, x0 : x0 + w8]
        repaint = (1.0 - alpha[y0 : y0 + h8, x0 : x0 + w8]) > 0.5
        sampler = by_type["KSampler"][0]
        texts = sorted(str(n["text"]) for n in by_type.get("CLIPTextEncode", []))
        digest = hashlib.sha256(f"{sampler['seed']}|{texts}".encode()).digest()
        denoise = float(sampler.get("denoise", 1.0))
        colour = np.array(list(digest[:3]), dtype=np.float32)
        out = rgb ^ 1  # the kept pixels, through a lossy "VAE"
        painted = rgb * (1.0 - denoise) + colour * denoise
        out[repaint] = painted[repaint].astype(np.int16)
        buf = io.BytesIO()
        Image.fromarray(out.clip(0, 255).astype(np.uint8)).save(buf, format="PNG")
        return buf.getvalue()

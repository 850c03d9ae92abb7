"""``comfyui``: a remote ComfyUI server runs the model.

Per image: upload the subject and the pose map (``POST /upload/image``), queue the filled
workflow (``POST /prompt``), follow it over the websocket (``/ws?clientId=``) or, when that is not
available, poll ``/history/{id}``, all under one deadline; then download the output (``/view``).
Unreachable server, 5xx and timeouts are transient (the generation is retried later); a workflow
the server rejects (400 with ``node_errors``) or an execution error is permanent.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import httpx
from PIL import Image

from posegen.config import Settings
from posegen.exceptions import ConfigError, GeneratorError
from posegen.generators.base import (
    GenerateRequest,
    GenerateResult,
    SequentialBatch,
    encode_png,
    fit_map,
    fit_subject,
    timeout_error,
)
from posegen.generators.comfyui_progress import Follower
from posegen.generators.workflow import fill, load_template

_NEUTRAL = (128, 128, 128)


class ComfyUIGenerator(SequentialBatch):
    """Runs the workflow template on a ComfyUI server, one image per queued prompt."""

    name = "comfyui"
    max_batch = 1

    def __init__(self, settings: Settings) -> None:
        url = (settings.comfyui_url or "").rstrip("/")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(
                "POSEGEN_BACKEND=comfyui needs POSEGEN_COMFYUI_URL "
                "(http(s)://host:port of the server)"
            )
        self._settings = settings
        self._base = url
        self._ws_base = ("wss" if parts.scheme == "https" else "ws") + url[len(parts.scheme) :]
        self._template = load_template(settings.comfyui_workflow_path)
        # The server is the operator's, not a URL from a database row: no SSRF guard, but no
        # environment proxies either.
        self._http = httpx.Client(base_url=url, trust_env=False, timeout=30.0)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    def generate(self, req: GenerateRequest) -> GenerateResult:
        """Queue one prompt and wait for its image."""
        started = time.perf_counter()
        budget = self._settings.comfyui_timeout_seconds
        left = req.seconds_left()
        if left is not None:
            budget = min(budget, left)
        deadline = time.monotonic() + budget
        subject = (
            fit_subject(req.subject, req.width, req.height)
            if req.subject is not None
            else Image.new("RGB", (req.width, req.height), _NEUTRAL)
        )
        pose_map = (
            fit_map(req.pose_map, req.width, req.height)
            if req.pose_map is not None
            else Image.new("RGB", (req.width, req.height))
        )
        s = self._settings
        values: dict[str, Any] = {
            "prompt": req.prompt,
            "negative_prompt": req.negative_prompt or "",
            "seed": req.seed % 2**64,
            "width": req.width,
            "height": req.height,
            "steps": s.comfyui_steps,
            # Without a subject the latent is a grey canvas, fully re-noised (plain txt2img).
            "denoise": s.comfyui_denoise if req.subject is not None else 1.0,
            "controlnet_strength": 1.0 if req.pose_map is not None else 0.0,
            "checkpoint": s.comfyui_checkpoint,
            "controlnet": s.comfyui_controlnet,
            "subject_image": self._upload(subject, deadline),
            "pose_map": self._upload(pose_map, deadline),
        }
        workflow = fill(self._template, values)
        client_id = uuid.uuid4().hex
        with Follower(self._ws_base, client_id, deadline) as follower:
            prompt_id = self._queue(workflow, client_id, deadline)
            try:
                entry = follower.wait(prompt_id, lambda: self._history(prompt_id, deadline))
            except GeneratorError as exc:
                if exc.kind == "generator-timeout":
                    self._abandon(prompt_id)
                    raise timeout_error(self.name, budget, transient=True) from exc
                raise
        png, image = self._download(entry, deadline)
        return GenerateResult(
            image_png=png,
            seed=req.seed,
            prompt=req.prompt,
            steps=s.comfyui_steps,
            duration_s=time.perf_counter() - started,
            meta={
                "backend": self.name,
                "promptId": prompt_id,
                "server": self._base,
                "width": image.width,
                "height": image.height,
            },
            image=image,
        )

    # --- protocol steps -----------------------------------------------------------------------
    def _upload(self, image: Image.Image, deadline: float) -> str:
        png = encode_png(image)
        # Content-addressed names: re-uploading the same subject overwrites one file.
        name = f"posegen-{hashlib.sha256(png).hexdigest()[:32]}.png"
        resp = self._request(
            "POST",
            "/upload/image",
            deadline,
            files={"image": (name, png, "image/png")},
            data={"type": "input", "overwrite": "true"},
        )
        body = _json(resp)
        stored = str(body.get("name") or name)
        sub = body.get("subfolder") or ""
        return f"{sub}/{stored}" if sub else stored

    def _queue(self, workflow: dict[str, Any], client_id: str, deadline: float) -> str:
        resp = self._request(
            "POST",
            "/prompt",
            deadline,
            json={"prompt": workflow, "client_id": client_id},
            check=False,
        )
        if resp.status_code == 400:
            body = _json(resp, strict=False)
            raise GeneratorError(
                f"ComfyUI rejected the workflow: {_describe_rejection(body)}",
                transient=False,
                kind="workflow-invalid",
            )
        _check(resp)
        prompt_id = _json(resp).get("prompt_id")
        if not isinstance(prompt_id, str) or not prompt_id:
            raise GeneratorError("ComfyUI answered /prompt without a prompt_id", transient=False)
        return prompt_id

    def _history(self, prompt_id: str, deadline: float) -> dict[str, Any] | None:
        body = _json(self._request("GET", f"/history/{prompt_id}", deadline))
        entry = body.get(prompt_id)
        return entry if isinstance(entry, dict) else None

    def _download(self, entry: dict[str, Any], deadline: float) -> tuple[bytes, Image.Image]:
        ref = _first_output(entry)
        resp = self._request("GET", "/view", deadline, params=ref)
        try:
            with Image.open(io.BytesIO(resp.content), formats=["PNG", "JPEG", "WEBP"]) as img:
                if img.width * img.height > self._settings.image_max_pixels:
                    raise GeneratorError("ComfyUI output is too large", transient=False)
                image = img.convert("RGB")
                is_png = img.format == "PNG"
        except (OSError, Image.DecompressionBombError) as exc:
            raise GeneratorError(
                "ComfyUI output is not a readable image", transient=False, kind="bad-output"
            ) from exc
        return (resp.content if is_png else encode_png(image)), image

    def _abandon(self, prompt_id: str) -> None:
        # Best effort: take it off the server's queue, or stop it if it is running.
        steps = (("/queue", {"delete": [prompt_id]}), ("/interrupt", {"prompt_id": prompt_id}))
        for path, body in steps:
            try:
                self._http.post(path, json=body, timeout=2.0)
            except httpx.HTTPError:
                return

    def _request(
        self, method: str, path: str, deadline: float, *, check: bool = True, **kwargs: Any
    ) -> httpx.Response:
        left = deadline - time.monotonic()
        if left <= 0:
            raise timeout_error(self.name, self._settings.comfyui_timeout_seconds, transient=True)
        try:
            resp = self._http.request(method, path, timeout=min(left, 30.0), **kwargs)
        except httpx.TimeoutException as exc:
            raise GeneratorError(
                f"ComfyUI did not answer {method} {path} in time",
                transient=True,
                kind="comfyui-unreachable",
            ) from exc
        except httpx.TransportError as exc:
            raise GeneratorError(
                f"cannot reach ComfyUI at {self._base}: {exc}",
                transient=True,
                kind="comfyui-unreachable",
            ) from exc
        if check:
            _check(resp)
        return resp


def _check(resp: httpx.Response) -> None:
    if resp.status_code >= 500:
        raise GeneratorError(
            f"ComfyUI answered {resp.status_code} to {resp.request.url.path}",
            transient=True,
            kind="comfyui-unavailable",
        )
    if resp.status_code >= 400:
        raise GeneratorError(
            f"ComfyUI answered {resp.status_code} to {resp.request.url.path}",
            transient=False,
            kind="comfyui-rejected",
        )


def _json(resp: httpx.Response, *, strict: bool = True) -> dict[str, Any]:
    try:
        body = resp.json()
    except ValueError as exc:
        if not strict:
            return {}
        raise GeneratorError(
            "ComfyUI answered with something that is not JSON", transient=False
        ) from exc
    return body if isinstance(body, dict) else {}


def _describe_rejection(body: dict[str, Any]) -> str:
    error = body.get("error")
    parts = [str(error.get("message", "")) if isinstance(error, dict) else str(error or "")]
    node_errors = body.get("node_errors")
    if isinstance(node_errors, dict):
        for node_id, info in list(node_errors.items())[:3]:
            errs = info.get("errors", []) if isinstance(info, dict) else []
            first = errs[0] if errs and isinstance(errs[0], dict) else {}
            detail = first.get("details") or first.get("message") or "invalid"
            parts.append(f"node {node_id} ({info.get('class_type', '?')}): {detail}")
    text = "; ".join(p for p in parts if p)
    return text or json.dumps(body)[:200]


def _first_output(entry: dict[str, Any]) -> dict[str, str]:
    outputs = entry.get("outputs")
    images = [
        img
        for node in (outputs.values() if isinstance(outputs, dict) else [])
        if isinstance(node, dict)
        for img in node.get("images", [])
        if isinstance(img, dict) and img.get("filename")
    ]
    # Prefer a saved output over a preview ("temp") when the workflow has both.
    images.sort(key=lambda img: img.get("type") != "output")
    if not images:
        raise GeneratorError(
            "the ComfyUI workflow produced no image", transient=False, kind="bad-output"
        )
    img = images[0]
    return {
        "filename": str(img["filename"]),
        "subfolder": str(img.get("subfolder", "")),
        "type": str(img.get("type", "output")),
    }

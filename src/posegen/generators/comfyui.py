"""``comfyui``: a remote ComfyUI server runs the model.

Per image: upload the subject and the pose map (``POST /upload/image``), queue the filled
workflow (``POST /prompt``), follow it over the websocket (``/ws?clientId=``) or, when that is not
available, poll ``/history/{id}``, all under one deadline; then download the output (``/view``).
A background repaint (:meth:`ComfyUIGenerator.inpaint`) uploads the image, then the subject mask
with ``POST /upload/mask`` (the server copies the mask's alpha into a copy of that image), and
runs the inpaint workflow the same way.
Unreachable server, 5xx, request timeouts and a server that lost the prompt (restarted) are
outages: the worker pauses and the generation is given back without spending an attempt. A
workflow the server rejects, wholly (400) or in part (200 with ``node_errors``), fails the whole
generation once; an execution error fails the pose. Only the template's output node counts as
the result, never a preview.
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
    InpaintRequest,
    SequentialBatch,
    encode_png,
    fit_map,
    fit_subject,
    keep_subject,
    timeout_error,
    work_size,
)
from posegen.generators.comfyui_check import check_workflow
from posegen.generators.comfyui_progress import Follower
from posegen.generators.workflow import (
    fill,
    literal_steps,
    load_template,
    output_node,
    placeholders,
    template_origin,
)

_NEUTRAL = (128, 128, 128)
#: A probe of a paused backend gives up after this long (it is retried with backoff).
_PROBE_SECONDS = 10.0


class ComfyUIGenerator(SequentialBatch):
    """Runs the workflow template on a ComfyUI server, one image per queued prompt."""

    name = "comfyui"
    max_batch = 1
    #: Repaints backgrounds with the inpaint workflow (:meth:`inpaint`).
    can_inpaint = True

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
        self._output = output_node(self._template, template_origin(settings.comfyui_workflow_path))
        inpaint_path = settings.comfyui_inpaint_workflow_path
        self._inpaint_template = load_template(inpaint_path, "inpaint")
        self._inpaint_output = output_node(
            self._inpaint_template, template_origin(inpaint_path, "inpaint")
        )
        self._inpaint_uses = placeholders(self._inpaint_template)
        inpaint_steps = settings.inpaint_steps or settings.comfyui_steps
        self._inpaint_steps = (
            inpaint_steps
            if "steps" in self._inpaint_uses
            else literal_steps(self._inpaint_template)
        )
        self._uses = placeholders(self._template)
        # What the result's metadata says: the setting when the template takes it, else the
        # template's own number (None when it has none or several).
        self._steps = (
            settings.comfyui_steps if "steps" in self._uses else literal_steps(self._template)
        )
        # The server is the operator's, not a URL from a database row: no SSRF guard, but no
        # environment proxies either.
        self._http = httpx.Client(base_url=url, trust_env=False, timeout=30.0)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    def probe(self) -> None:
        """Whether the server can run the workflow now: it answers, and ``/object_info`` has
        every node class and model file the template names. Raises GeneratorError
        (``outage``) when it does not answer, ConfigError when it answers but lacks something.
        The worker calls this at start-up and while its breaker is open."""
        deadline = time.monotonic() + _PROBE_SECONDS
        info = _json(self._request("GET", "/object_info", deadline))
        s = self._settings
        models = {"checkpoint": s.comfyui_checkpoint, "controlnet": s.comfyui_controlnet}
        problems = check_workflow(self._template, info, models)
        # The inpaint workflow too: a worker that says it can repaint backgrounds must.
        problems += [
            f"inpaint workflow: {p}"
            for p in check_workflow(self._inpaint_template, info, models)
            if p not in problems  # the same model file missing from both says so once
        ]
        if problems:
            # Its own kind (exit 1, not 2): posegen's settings are fine, the server lacks
            # something the operator must install there.
            raise ConfigError(
                f"ComfyUI at {self._base} cannot run the workflow: " + "; ".join(problems[:5]),
                kind="backend-not-ready",
            )

    def generate(self, req: GenerateRequest) -> GenerateResult:
        """Queue one prompt and wait for its image."""
        started = time.perf_counter()
        budget = self._settings.comfyui_timeout_seconds
        left = req.seconds_left()
        if left is not None:
            budget = min(budget, left)
        deadline = time.monotonic() + budget
        subject: Image.Image | None = None
        if "subject_image" in self._uses:  # a template without it never sees the subject
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
            "subject_image": self._upload(subject, deadline) if subject is not None else "",
            "pose_map": self._upload(pose_map, deadline),
        }
        workflow = fill(self._template, values)
        prompt_id, png, image = self._run(workflow, self._output, budget, deadline)
        return GenerateResult(
            image_png=png,
            seed=req.seed,
            prompt=req.prompt,
            steps=self._steps,
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

    def inpaint(self, req: InpaintRequest) -> GenerateResult:
        """Repaint the background around the mask's subject with the inpaint workflow.

        The image goes up at the nearest multiple-of-8 size (``VAEEncodeForInpaint`` would crop
        otherwise), the result comes back at the image's own size with the subject's pixels put
        back exactly (:func:`~posegen.generators.base.keep_subject`).
        """
        started = time.perf_counter()
        budget = self._settings.comfyui_timeout_seconds
        left = req.seconds_left()
        if left is not None:
            budget = min(budget, left)
        deadline = time.monotonic() + budget
        width, height = work_size(*req.image.size)
        image, mask = req.image, req.mask
        if (width, height) != image.size:
            image = image.resize((width, height), Image.Resampling.LANCZOS)
            mask = mask.resize((width, height), Image.Resampling.BILINEAR)
        source = self._upload_file(image, deadline)
        s = self._settings
        values: dict[str, Any] = {
            "prompt": req.prompt,
            "negative_prompt": req.negative_prompt or "",
            "seed": req.seed % 2**64,
            "width": width,
            "height": height,
            "steps": s.inpaint_steps or s.comfyui_steps,
            "denoise": s.inpaint_strength,
            "checkpoint": s.comfyui_checkpoint,
            "controlnet": s.comfyui_controlnet,
            "source_image": _ref(*source),
            "masked_image": self._upload_mask(mask, source, deadline),
        }
        workflow = fill(self._inpaint_template, values)
        prompt_id, _png, painted = self._run(workflow, self._inpaint_output, budget, deadline)
        out = keep_subject(req.image, painted, req.mask)
        return GenerateResult(
            image_png=encode_png(out),
            seed=req.seed,
            prompt=req.prompt,
            steps=self._inpaint_steps,
            duration_s=time.perf_counter() - started,
            meta={
                "backend": self.name,
                "mode": "inpaint",
                "promptId": prompt_id,
                "server": self._base,
                "strength": s.inpaint_strength,
                "width": out.width,
                "height": out.height,
            },
            image=out,
        )

    def _run(
        self, workflow: dict[str, Any], output: str, budget: float, deadline: float
    ) -> tuple[str, bytes, Image.Image]:
        """Queue ``workflow``, wait for it, download ``output``'s image: (prompt id, PNG, image)."""
        client_id = uuid.uuid4().hex
        with Follower(self._ws_base, client_id, deadline) as follower:
            prompt_id = self._queue(workflow, client_id, deadline)
            try:
                entry = follower.wait(
                    prompt_id,
                    lambda: self._history(prompt_id, deadline),
                    lambda: self._still_queued(prompt_id, deadline),
                )
            except GeneratorError as exc:
                if exc.kind == "generator-timeout":
                    self._abandon(prompt_id)
                    raise timeout_error(self.name, budget, transient=True) from exc
                raise
        png, image = self._download(entry, output, deadline)
        return prompt_id, png, image

    # --- protocol steps -----------------------------------------------------------------------
    def _upload(self, image: Image.Image, deadline: float) -> str:
        return _ref(*self._upload_file(image, deadline))

    def _upload_file(self, image: Image.Image, deadline: float) -> tuple[str, str]:
        """Upload ``image`` to the server's input folder: (name, subfolder) as it stored it."""
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
        return str(body.get("name") or name), str(body.get("subfolder") or "")

    def _upload_mask(self, mask: Image.Image, original: tuple[str, str], deadline: float) -> str:
        """``POST /upload/mask``: the server opens ``original`` (an upload), replaces its alpha
        with this upload's alpha and saves it under this upload's name. The alpha is the subject
        mask as it is (opaque = keep), so ``LoadImage``'s MASK (1 - alpha) is the background."""
        carrier = Image.new("RGBA", mask.size, (0, 0, 0, 0))
        carrier.putalpha(mask)
        png = encode_png(carrier)
        digest = hashlib.sha256(png + original[0].encode()).hexdigest()[:32]
        name = f"posegen-mask-{digest}.png"
        ref = {"filename": original[0], "subfolder": original[1], "type": "input"}
        resp = self._request(
            "POST",
            "/upload/mask",
            deadline,
            files={"image": (name, png, "image/png")},
            data={
                "type": "input",
                "subfolder": "",
                "overwrite": "true",
                "original_ref": json.dumps(ref),
            },
        )
        body = _json(resp)
        return _ref(str(body.get("name") or name), str(body.get("subfolder") or ""))

    def _queue(self, workflow: dict[str, Any], client_id: str, deadline: float) -> str:
        resp = self._request(
            "POST",
            "/prompt",
            deadline,
            json={"prompt": workflow, "client_id": client_id},
            check=False,
        )
        if resp.status_code == 400:
            raise _rejected(_json(resp, strict=False), "rejected the workflow")
        _check(resp)
        body = _json(resp)
        prompt_id = body.get("prompt_id")
        if body.get("node_errors"):
            # Accepted in part: ComfyUI runs only the valid output branches. Whatever they make
            # is not what the template asked for, so take it off the server and fail.
            if isinstance(prompt_id, str) and prompt_id:
                self._abandon(prompt_id)
            raise _rejected(body, "accepted only part of the workflow")
        if not isinstance(prompt_id, str) or not prompt_id:
            raise GeneratorError("ComfyUI answered /prompt without a prompt_id", transient=False)
        return prompt_id

    def _history(self, prompt_id: str, deadline: float) -> dict[str, Any] | None:
        body = _json(self._request("GET", f"/history/{prompt_id}", deadline))
        entry = body.get(prompt_id)
        return entry if isinstance(entry, dict) else None

    def _still_queued(self, prompt_id: str, deadline: float) -> bool:
        """Whether the server still knows the prompt (running, pending or finished): a server
        that restarted since it was queued has forgotten it."""
        body = _json(self._request("GET", "/queue", deadline))
        for key in ("queue_running", "queue_pending"):
            for item in body.get(key) or []:
                if isinstance(item, list) and len(item) > 1 and item[1] == prompt_id:
                    return True
        # Asked after the queue: a prompt that finished in between is in the history now.
        return self._history(prompt_id, deadline) is not None

    def _download(
        self, entry: dict[str, Any], output: str, deadline: float
    ) -> tuple[bytes, Image.Image]:
        ref = _output_image(entry, output)
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
                outage=True,
                kind="comfyui-unreachable",
            ) from exc
        except httpx.TransportError as exc:
            raise GeneratorError(
                f"cannot reach ComfyUI at {self._base}: {exc}",
                transient=True,
                outage=True,
                kind="comfyui-unreachable",
            ) from exc
        if check:
            _check(resp)
        return resp


def _ref(name: str, subfolder: str) -> str:
    """How ``LoadImage`` names an upload: ``subfolder/name``, or the name alone."""
    return f"{subfolder}/{name}" if subfolder else name


def _check(resp: httpx.Response) -> None:
    if resp.status_code >= 500:
        raise GeneratorError(
            f"ComfyUI answered {resp.status_code} to {resp.request.url.path}",
            transient=True,
            outage=True,
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


def _rejected(body: dict[str, Any], what: str) -> GeneratorError:
    return GeneratorError(
        f"ComfyUI {what}: {_describe_rejection(body)}",
        transient=False,
        kind="workflow-invalid",
        whole_generation=True,
    )


def _describe_rejection(body: dict[str, Any]) -> str:
    """ComfyUI's error and the nodes it names, each with both its ``message`` and ``details``
    ("Value 7.5 bigger than max of 1.0: strength"): either alone is often useless."""
    error = body.get("error")
    node_errors = body.get("node_errors")
    if isinstance(error, dict):
        # With node errors, the error's details only repeat them, one per line.
        whole = node_errors and isinstance(node_errors, dict)
        parts = [str(error.get("message") or "") if whole else _message_details(error)]
    else:
        parts = [str(error or "")]
    if isinstance(node_errors, dict):
        for node_id, info in list(node_errors.items())[:5]:
            info = info if isinstance(info, dict) else {}
            errs = [e for e in info.get("errors", []) if isinstance(e, dict)]
            text = "; ".join(_message_details(e) for e in errs[:3]) or "invalid"
            parts.append(f"node {node_id} ({info.get('class_type', '?')}): {text}")
        if len(node_errors) > 5:
            parts.append(f"and {len(node_errors) - 5} more nodes")
    text = "; ".join(p for p in parts if p)
    return text or json.dumps(body)[:200]


def _message_details(error: dict[str, Any]) -> str:
    message = str(error.get("message") or "").strip()
    details = str(error.get("details") or "").strip()
    # A whole-graph rejection repeats every node's errors in its details, one per line.
    details = details.replace("\n", "; ")
    if message and details and details not in message:
        return f"{message}: {details}"
    return message or details


def _output_image(entry: dict[str, Any], node_id: str) -> dict[str, str]:
    """The first saved image of the template's output node; previews never count."""
    outputs = entry.get("outputs")
    node = outputs.get(node_id) if isinstance(outputs, dict) else None
    images = [
        img
        for img in (node.get("images", []) if isinstance(node, dict) else [])
        if isinstance(img, dict) and img.get("filename") and img.get("type", "output") == "output"
    ]
    if not images:
        raise GeneratorError(
            f"the ComfyUI workflow produced no image at its output node {node_id}",
            transient=False,
            kind="bad-output",
        )
    img = images[0]
    return {
        "filename": str(img["filename"]),
        "subfolder": str(img.get("subfolder", "")),
        "type": "output",
    }

"""ComfyUI workflow templates: the ones shipped in the package or an operator's own JSON.

A template is a ComfyUI API-format workflow whose string values may hold ``{{placeholders}}``.
A value that is exactly one placeholder is replaced by the typed value (a seed stays a number);
a placeholder inside a longer string is replaced as text. Values are substituted in the parsed
tree, never in the JSON text, so a prompt with quotes or braces cannot change the workflow.

Two kinds: ``generate`` (a pose to an image, ``workflows/comfyui_default.json``) and
``inpaint`` (a background repainted around a kept subject, ``workflows/comfyui_inpaint.json``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from posegen.exceptions import ConfigError

PLACEHOLDERS = frozenset(
    {
        "prompt",
        "negative_prompt",
        "seed",
        "width",
        "height",
        "steps",
        "denoise",
        "subject_image",
        "pose_map",
        "controlnet_strength",
        "checkpoint",
        "controlnet",
    }
)
#: Without these a workflow would ignore the pose or make every variation the same picture.
REQUIRED = frozenset({"prompt", "seed", "pose_map"})

#: An inpaint workflow's placeholders. ``masked_image``: the image with the subject mask in its
#: alpha channel (uploaded with ``/upload/mask``), so one ``LoadImage`` gives the IMAGE (output
#: 0) and the MASK (output 1: 1.0 where the background is repainted); ``source_image``: the same
#: image without the mask; ``width`` / ``height``: its size (multiples of 8).
INPAINT_PLACEHOLDERS = frozenset(
    {
        "prompt",
        "negative_prompt",
        "seed",
        "width",
        "height",
        "steps",
        "denoise",
        "checkpoint",
        "controlnet",
        "masked_image",
        "source_image",
    }
)
#: Without these the repaint would ignore the prompt, the seed or the mask.
INPAINT_REQUIRED = frozenset({"prompt", "seed", "masked_image"})

#: Every placeholder any template kind may use.
ALL_PLACEHOLDERS = PLACEHOLDERS | INPAINT_PLACEHOLDERS

TemplateKind = Literal["generate", "inpaint"]


@dataclass(frozen=True)
class _Kind:
    default_file: str
    setting: str
    default_name: str
    allowed: frozenset[str]
    required: frozenset[str]


_KINDS: dict[str, _Kind] = {
    "generate": _Kind(
        "comfyui_default.json",
        "POSEGEN_COMFYUI_WORKFLOW_PATH",
        "the default ComfyUI workflow",
        PLACEHOLDERS,
        REQUIRED,
    ),
    "inpaint": _Kind(
        "comfyui_inpaint.json",
        "POSEGEN_COMFYUI_INPAINT_WORKFLOW_PATH",
        "the default ComfyUI inpaint workflow",
        INPAINT_PLACEHOLDERS,
        INPAINT_REQUIRED,
    ),
}


def template_origin(path: Path | None, kind: TemplateKind = "generate") -> str:
    """How messages name a template: the setting and its value, or the shipped default."""
    k = _KINDS[kind]
    return f"{k.setting}={path}" if path is not None else k.default_name


_TOKEN = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")


def load_template(path: Path | None, kind: TemplateKind = "generate") -> dict[str, Any]:
    """Parse and check a template of ``kind`` (``None`` = the default shipped with posegen)."""
    k = _KINDS[kind]
    origin = template_origin(path, kind)
    if path is None:
        text = (
            resources.files("posegen.generators")
            .joinpath(f"workflows/{k.default_file}")
            .read_text(encoding="utf-8")
        )
    else:
        try:
            text = path.expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{origin}: cannot read it ({exc.strerror})") from exc
    try:
        template = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{origin}: not valid JSON ({exc})") from exc
    if not isinstance(template, dict) or not template:
        raise ConfigError(f"{origin}: expected a ComfyUI API-format workflow (a JSON object)")
    for node_id, node in template.items():
        if not isinstance(node, dict) or "class_type" not in node or "inputs" not in node:
            raise ConfigError(
                f"{origin}: node {node_id!r} has no class_type/inputs "
                "(export the workflow with 'Save (API Format)')"
            )
    found = set(_tokens(template))
    unknown = found - k.allowed
    if unknown:
        raise ConfigError(f"{origin}: unknown placeholder(s) {sorted(unknown)}")
    missing = k.required - found
    if missing:
        raise ConfigError(f"{origin}: missing placeholder(s) {sorted(missing)}")
    return template


#: ``_meta.title`` that marks the node whose images are the result (when the workflow has more
#: than one ``SaveImage`` node, or saves through a custom node).
OUTPUT_TITLE = "posegen output"
#: Nodes that only show an image in ComfyUI's own UI: never a result.
PREVIEW_CLASSES = frozenset({"PreviewImage"})


def placeholders(template: dict[str, Any]) -> frozenset[str]:
    """The placeholders a template uses."""
    return frozenset(_tokens(template))


def output_node(template: dict[str, Any], origin: str = "the ComfyUI workflow") -> str:
    """The id of the node whose images are the result: the one titled ``posegen output``, else
    the only ``SaveImage`` node. Previews never count (ConfigError when none qualifies)."""
    titled = [
        node_id
        for node_id, node in template.items()
        if isinstance(node.get("_meta"), dict)
        and str(node["_meta"].get("title", "")).strip().lower() == OUTPUT_TITLE
    ]
    saves = [node_id for node_id, node in template.items() if node["class_type"] == "SaveImage"]
    chosen = titled or saves
    if len(chosen) != 1:
        found = (
            f"{len(chosen)} {'nodes titled ' + repr(OUTPUT_TITLE) if titled else 'SaveImage nodes'}"
        )
        raise ConfigError(
            f"{origin}: cannot tell which node is the result ({found}): "
            f"give exactly one node the title {OUTPUT_TITLE!r}"
        )
    node_id = chosen[0]
    if template[node_id]["class_type"] in PREVIEW_CLASSES:
        raise ConfigError(f"{origin}: the result node {node_id} is a preview; use SaveImage")
    return node_id


def literal_steps(template: dict[str, Any]) -> int | None:
    """The sampler steps a template fixes itself (no ``{{steps}}``): the one integer ``steps``
    input, or None when there is none or several different ones."""
    found = {
        node["inputs"]["steps"]
        for node in template.values()
        if isinstance(node.get("inputs"), dict)
        and isinstance(node["inputs"].get("steps"), int)
        and not isinstance(node["inputs"].get("steps"), bool)
    }
    return found.pop() if len(found) == 1 else None


def fill(template: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``template`` with every placeholder replaced from ``values``."""
    result = _fill(template, values)
    assert isinstance(result, dict)
    return result


def _fill(node: Any, values: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        return {k: _fill(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill(v, values) for v in node]
    if isinstance(node, str):
        whole = _TOKEN.fullmatch(node)
        if whole:
            return values[whole.group(1)]
        return _TOKEN.sub(lambda m: str(values[m.group(1)]), node)
    return node


def _tokens(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [t for v in node.values() for t in _tokens(v)]
    if isinstance(node, list):
        return [t for v in node for t in _tokens(v)]
    if isinstance(node, str):
        return _TOKEN.findall(node)
    return []

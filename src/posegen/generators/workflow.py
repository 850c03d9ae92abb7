"""ComfyUI workflow templates: the one shipped in the package or an operator's own JSON.

A template is a ComfyUI API-format workflow whose string values may hold ``{{placeholders}}``.
A value that is exactly one placeholder is replaced by the typed value (a seed stays a number);
a placeholder inside a longer string is replaced as text. Values are substituted in the parsed
tree, never in the JSON text, so a prompt with quotes or braces cannot change the workflow.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

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

_TOKEN = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")


def load_template(path: Path | None) -> dict[str, Any]:
    """Parse and check a template (``None`` = the default shipped with posegen)."""
    if path is None:
        text = (
            resources.files("posegen.generators")
            .joinpath("workflows/comfyui_default.json")
            .read_text(encoding="utf-8")
        )
        origin = "the default ComfyUI workflow"
    else:
        origin = f"POSEGEN_COMFYUI_WORKFLOW_PATH={path}"
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
    unknown = found - PLACEHOLDERS
    if unknown:
        raise ConfigError(f"{origin}: unknown placeholder(s) {sorted(unknown)}")
    missing = REQUIRED - found
    if missing:
        raise ConfigError(f"{origin}: missing placeholder(s) {sorted(missing)}")
    return template


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

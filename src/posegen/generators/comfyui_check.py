"""Can this ComfyUI server run this workflow? Asked of ``GET /object_info`` before any pose.

Every node class of the template must exist on the server, and every choice the template fixes
(a checkpoint, a ControlNet, a sampler name...) must be one the server offers: model files are
choices of their loader nodes, so a missing file shows up here instead of failing poses one by
one. ``posegen worker`` runs it at start-up and whenever it probes a paused backend; a future
``posegen models check`` can call :func:`check_workflow` with the same template.
"""

from __future__ import annotations

from typing import Any

from posegen.generators.workflow import ALL_PLACEHOLDERS, fill, placeholders

#: Placeholders whose values are only known per pose (uploaded images, prompt, seed...): inputs
#: holding them are not checked. ``checkpoint`` and ``controlnet`` are settings, so they are.
_PER_POSE = ALL_PLACEHOLDERS - {"checkpoint", "controlnet"}


def check_workflow(
    template: dict[str, Any], object_info: dict[str, Any], settings_values: dict[str, Any]
) -> list[str]:
    """Problems that stop ``template`` from running on a server with ``object_info``; empty
    when it can run. ``settings_values`` fills the ``{{checkpoint}}`` / ``{{controlnet}}``
    placeholders."""
    problems: list[str] = []
    for node_id, node in template.items():
        kind = node["class_type"]
        info = object_info.get(kind)
        if not isinstance(info, dict):
            problems.append(f"node {node_id}: node class {kind!r} is not installed")
            continue
        inputs = info.get("input")
        if not isinstance(inputs, dict):
            inputs = {}
        specs: dict[str, Any] = {}
        for group in ("required", "optional"):
            if isinstance(inputs.get(group), dict):
                specs.update(inputs[group])
        for name, raw in node["inputs"].items():
            if isinstance(raw, list) or placeholders({"v": raw}) & _PER_POSE:
                continue  # a link, or a value only known per pose
            choices = _choices(specs.get(name))
            if choices is None:
                continue
            value = fill({"v": raw}, settings_values)["v"]
            if value not in choices:
                shown = ", ".join(map(str, choices[:10])) or "nothing"
                more = f" and {len(choices) - 10} more" if len(choices) > 10 else ""
                problems.append(
                    f"node {node_id} ({kind}): {name} {value!r} is not installed "
                    f"(the server offers {shown}{more})"
                )
    return problems


def _choices(spec: Any) -> list[Any] | None:
    """The allowed values of a combo input: ``[[a, b], {...}]`` or ``["COMBO", {"options":
    [a, b]}]`` (newer servers); None for any other input type."""
    if not isinstance(spec, list) or not spec:
        return None
    if isinstance(spec[0], list):
        return list(spec[0])
    if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
        options = spec[1].get("options")
        return list(options) if isinstance(options, list) else None
    return None

"""What a library pose says about itself besides its keypoints: the closed sets of difficulty,
suitability and framing (the database CHECKs the same lists), and the checks writers share.

``suitability`` says whom the pose was drawn for: ``any`` (most poses), or ``female`` / ``male``
for poses whose styling reads as one (the original app's "gender suitability", with ``any``
for its ``unisex``). ``framing`` is the pose JSON's own field (:mod:`posegen.pose`); the column
is a copy written with it.
"""

from __future__ import annotations

from typing import Any

from posegen.exceptions import InvalidInput
from posegen.pose import FRAMINGS

DIFFICULTIES = ("beginner", "intermediate", "advanced")
SUITABILITIES = ("any", "female", "male")
#: Defaults for a pose that does not say (the columns' server defaults, the loader's too).
DEFAULTS: dict[str, Any] = {
    "difficulty": "beginner",
    "suitability": "any",
    "featured": False,
    "premium": False,
}
#: Free-text provenance fields, each at most this long.
TEXT_FIELDS = ("source", "licence", "author")
TEXT_MAX = 200

_CHOICES = {"difficulty": DIFFICULTIES, "suitability": SUITABILITIES, "framing": FRAMINGS}


def check_choice(field: str, value: Any) -> str:
    """``value`` if it is one of ``field``'s closed set; else 422 naming the set."""
    allowed = _CHOICES[field]
    if value not in allowed:
        raise InvalidInput(
            f"{field} must be one of {', '.join(allowed)}, not {value!r}", kind="invalid-input"
        )
    return str(value)


def check(values: dict[str, Any]) -> dict[str, Any]:
    """Check the attribute fields present in ``values`` (in place); nulls are refused for the
    ones that always have a value."""
    for field in ("difficulty", "suitability", "framing"):
        if field in values:
            check_choice(field, values[field])
    for field in ("featured", "premium"):
        if field in values and not isinstance(values[field], bool):
            raise InvalidInput(f"{field} must be true or false", kind="invalid-input")
    for field in TEXT_FIELDS:
        value = values.get(field)
        if value is not None and (not isinstance(value, str) or len(value) > TEXT_MAX):
            raise InvalidInput(
                f"{field}: text of at most {TEXT_MAX} characters", kind="invalid-input"
            )
    return values


def sync_framing(values: dict[str, Any], current_keypoints: dict[str, Any] | None = None) -> None:
    """Make ``values["framing"]`` and the pose JSON's framing one value (in place).

    A framing given explicitly wins and is written into the keypoints (the new ones, or the
    pose's current ones); otherwise new keypoints set the column.
    """
    keypoints = values.get("keypoints")
    if "framing" in values:
        framing = check_choice("framing", values["framing"])
        target = keypoints if "keypoints" in values else current_keypoints
        if target is not None and target.get("framing") != framing:
            values["keypoints"] = {**target, "framing": framing}
    elif keypoints is not None:
        values["framing"] = keypoints["framing"]

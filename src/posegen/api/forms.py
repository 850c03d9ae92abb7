"""Bodies that come as JSON or as multipart (with one image file), validated by one model.

FastAPI cannot declare "this model as JSON, or these form fields plus a file" on one route, so
such routes read the request here and document both media types with :func:`request_body`.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from posegen.api.input_guard import json_problem
from posegen.config import Settings
from posegen.exceptions import InvalidInput

M = TypeVar("M", bound=BaseModel)

MAX_FORM_FIELDS = 30
MAX_FIELD_BYTES = 64 * 1024


async def read_body(
    request: Request, model: type[M], settings: Settings, file_field: str
) -> tuple[M, bytes | None]:
    """Parse ``model`` from a JSON or multipart body; returns it and the uploaded file's bytes."""
    body, _, upload = await read_body_file(request, model, settings, (file_field,))
    return body, upload


async def read_body_file(
    request: Request, model: type[M], settings: Settings, file_fields: tuple[str, ...]
) -> tuple[M, str | None, bytes | None]:
    """:func:`read_body` where the one file may come in any of ``file_fields``; returns the
    model, the field the file came in (None without one) and its bytes."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "multipart/form-data":
        return await _from_form(request, model, settings, file_fields)
    if media != "application/json" and not media.endswith("+json"):
        raise InvalidInput(
            "send application/json or multipart/form-data", kind="unsupported-media-type"
        )
    raw = await request.body()
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body",), "msg": "malformed JSON"}]
        ) from exc
    return validate(model, payload), None, None


def validate(model: type[M], payload: Any) -> M:
    """``model.model_validate`` with errors reported like FastAPI's own (422, loc under body)."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        raise RequestValidationError(errors) from exc


async def _from_form(
    request: Request, model: type[M], settings: Settings, file_fields: tuple[str, ...]
) -> tuple[M, str | None, bytes | None]:
    form = await request.form(
        max_files=1, max_fields=MAX_FORM_FIELDS, max_part_size=MAX_FIELD_BYTES
    )
    fields: dict[str, Any] = {}
    upload: bytes | None = None
    field: str | None = None
    try:
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                if name not in file_fields:
                    raise InvalidInput(f"unexpected file field {name!r}", kind="unexpected-file")
                field = name
                upload = await value.read(settings.upload_max_bytes + 1)
                if len(upload) > settings.upload_max_bytes:
                    raise InvalidInput(
                        f"upload is over the {settings.upload_max_bytes}-byte limit",
                        kind="upload-too-large",
                    )
            elif name in fields:
                raise InvalidInput(f"field {name!r} given twice", kind="duplicate-field")
            else:
                fields[name] = _form_value(value)
    finally:
        await form.close()
    return validate(model, fields), field, upload


def _form_value(value: str) -> Any:
    # Form fields are text; lists (tags) and JSON (keypoints) arrive as JSON text.
    text = value.strip()
    if text[:1] in ("[", "{"):
        found = json_problem(text.encode())
        if found is not None:  # a deep field would end the parser in RecursionError (a 500)
            raise InvalidInput(found[1], kind=found[0])
        try:
            return json.loads(text)
        except ValueError:
            return value
    return value


def request_body(model: type[BaseModel], file_field: str, file_help: str) -> dict[str, Any]:
    """``openapi_extra`` documenting a JSON body, or the same fields as multipart plus a file."""
    schema = model.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
    form = json.loads(json.dumps(schema))
    form.setdefault("properties", {})[file_field] = {
        "type": "string",
        "format": "binary",
        "description": file_help,
    }
    form["properties"] = {k: _form_property(v) for k, v in form["properties"].items()}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": schema},
                "multipart/form-data": {"schema": form},
            },
        }
    }


def _form_property(prop: dict[str, Any]) -> dict[str, Any]:
    # In multipart every field is text; lists and objects are sent as JSON text.
    if prop.get("format") == "binary":
        return prop
    return {
        "type": "string",
        "description": prop.get("description", "") + " (text; JSON for lists)",
    }

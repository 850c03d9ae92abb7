"""The OpenAPI document: every error response documented as ``application/problem+json``.

Routes declare the errors particular to them with :func:`problems`; the ones every route can
answer (401/403 when it needs a key, 400/413 when it takes a body, 422 from the input guard,
500) are added here for all routes, so a route added later cannot forget them.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from posegen.api.errors import PROBLEM_MEDIA_TYPE
from posegen.api.schemas import Problem

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_METHODS = ("get", "put", "post", "patch", "delete", "head", "options")


def _problem_response(status: int) -> dict[str, Any]:
    return {
        "description": HTTPStatus(status).phrase,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": PROBLEM_REF}},
    }


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for the error statuses a route may answer besides the common ones."""
    return {status: _problem_response(status) for status in statuses}


def _patch_operation(op: dict[str, Any]) -> None:
    responses: dict[str, Any] = op.setdefault("responses", {})
    # 422 everywhere: the input guard refuses a NUL or an out-of-range id in any address.
    wanted = {422, 500}
    if op.get("security"):
        wanted |= {401, 403}
    if op.get("requestBody"):
        wanted |= {400, 413}
    for status in wanted:
        responses[str(status)] = _problem_response(status)
    # Any error response a route declared with a plain JSON body is a problem document too.
    for code, response in responses.items():
        if code[:1] in ("4", "5"):
            response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": PROBLEM_REF}}


def install(app: FastAPI) -> None:
    """Replace ``app.openapi`` with a cached builder that applies the problem responses."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["Problem"] = Problem.model_json_schema()
        for path_item in schema.get("paths", {}).values():
            for method in _METHODS:
                if method in path_item:
                    _patch_operation(path_item[method])
        # FastAPI's own 422 body was replaced above; drop its schemas once nothing refers to them.
        for name in ("HTTPValidationError", "ValidationError"):
            if f'"#/components/schemas/{name}"' not in json.dumps(schema):
                components.pop(name, None)
        app.openapi_schema = schema
        return schema

    app.openapi = build  # type: ignore[method-assign]

"""Helpers shared by the API tests (imported by name: tests/api is on sys.path)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from fastapi.testclient import TestClient

from posegen.api.app import PREFIX

ROOT_PATHS = ("/healthz", "/readyz", "/openapi.json", "/docs")


@dataclass(frozen=True)
class Keys:
    user: str
    other: str
    admin: str
    user_id: int
    other_id: int
    admin_id: int


class Api:
    """A TestClient that prefixes API paths and sends a bearer key."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    def __call__(
        self, method: str, path: str, key: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        url = path if path.startswith((*ROOT_PATHS, PREFIX)) else PREFIX + path
        return self.client.request(method, url, headers=headers, **kwargs)


def problem_of(response: httpx.Response, status: int) -> dict[str, Any]:
    """Assert ``response`` is a problem document with ``status``; return its body."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"] == "https://posegen.dev/problems/" + body["kind"]
    return body

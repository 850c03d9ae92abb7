"""Signing in with an API key: the cookie, what it holds, revocation, tampering, CSRF, redirects."""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient
from itsdangerous import URLSafeTimedSerializer
from pydantic import SecretStr
from sqlalchemy import Engine, func, select
from web_helpers import People, csrf_of, sign_in, signed_in_client, submit_library

from posegen import accounts, generations_read
from posegen.config import Settings
from posegen.db.models import GenerationStatus
from posegen.db.models import WebSession as WebSessionRow
from posegen.web.session import COOKIE_NAME, SECRET_FILE, load_secret


def test_anonymous_pages_redirect_to_sign_in_with_next(client: TestClient) -> None:
    for path in ("/ui/generations", "/ui/overview", "/ui/library", "/ui/generations/1"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/ui/sign-in?next=%2Fui%2F"), r.headers
    assert client.get("/", follow_redirects=False).headers["location"] == "/ui/"


def test_sign_in_sets_an_httponly_lax_cookie_without_the_key(
    client: TestClient, people: People
) -> None:
    r = sign_in(client, people.user.api_key, next_url="/ui/library")
    assert r.status_code == 303
    assert r.headers["location"] == "/ui/library"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/ui" in cookie
    assert "Secure" not in cookie  # plain http here; see the https test
    assert people.user.api_key not in cookie
    page = client.get("/ui/generations")
    assert page.status_code == 200
    assert "Uma User" in page.text
    assert people.user.api_key not in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]


def test_cookie_is_secure_over_https(
    make_client: Callable[..., TestClient], people: People
) -> None:
    browser = make_client("https://testserver")
    r = sign_in(browser, people.user.api_key)
    assert r.status_code == 303
    assert "Secure" in r.headers["set-cookie"]


def test_wrong_key_redraws_the_form_with_401(client: TestClient, people: People) -> None:
    r = sign_in(client, "pg_not-a-real-key")
    assert r.status_code == 401
    assert "not valid" in r.text
    assert client.get("/ui/generations", follow_redirects=False).status_code == 303


def test_next_cannot_leave_the_dashboard(client: TestClient, people: People) -> None:
    for evil in ("//evil.example/x", "https://evil.example/", "/api/pose-generator/x", "/ui\\x"):
        r = sign_in(client, people.user.api_key, next_url=evil)
        assert r.status_code == 303
        assert r.headers["location"] == "/ui/generations", evil


def test_revoking_the_key_ends_the_session(
    client: TestClient, people: People, engine: Engine
) -> None:
    signed_in_client(client, people.user.api_key)
    assert client.get("/ui/generations").status_code == 200
    accounts.revoke_keys(engine, email="uma@example.com")
    r = client.get("/ui/generations", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/sign-in")


def _replace_cookie(client: TestClient, value: str) -> None:
    client.cookies.clear()
    client.cookies.set(COOKIE_NAME, value)


def test_tampered_or_foreign_cookies_are_not_sessions(
    client: TestClient, people: People, settings: Settings
) -> None:
    signed_in_client(client, people.user.api_key)
    real = client.cookies.get(COOKIE_NAME)
    assert real
    _payload, _, rest = real.partition(".")
    admin = people.admin.account.id  # each person has one key, made in the same order
    claims = {"u": admin, "k": admin, "n": "x"}
    # The admin's claims with the user's signature: refused.
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    _replace_cookie(client, f"{forged}.{rest}")
    assert client.get("/ui/overview", follow_redirects=False).status_code == 303
    # Well signed, but with another secret: refused.
    other = URLSafeTimedSerializer("another secret", salt="posegen.web.session")
    _replace_cookie(client, other.dumps(claims))
    assert client.get("/ui/overview", follow_redirects=False).status_code == 303
    # The real cookie still works (the refusals above were the signature check).
    _replace_cookie(client, real)
    assert client.get("/ui/generations", follow_redirects=False).status_code == 200


def test_post_without_or_with_a_foreign_csrf_token_is_refused(
    make_client: Callable[..., TestClient], people: People, engine: Engine, settings: Settings
) -> None:
    victim = signed_in_client(make_client(), people.user.api_key)
    attacker = signed_in_client(make_client(), people.other.api_key)
    gen_id = submit_library(engine, settings, people.user.account.id, [1])
    url = f"/ui/generations/{gen_id}/cancel"
    no_token = victim.post(url, data={}, follow_redirects=False)
    assert no_token.status_code == 403 and "form token" in no_token.text
    # A token minted for another session (the attacker's own page) does not work on the victim's.
    foreign = csrf_of(attacker.get("/ui/generations").text)
    forged = victim.post(url, data={"csrf_token": foreign}, follow_redirects=False)
    assert forged.status_code == 403
    garbage = victim.post(url, data={"csrf_token": "abc.def"}, follow_redirects=False)
    assert garbage.status_code == 403
    assert generations_read.get_visible(engine, gen_id, None).status == GenerationStatus.PENDING
    # With the victim's own token it works: the check is what refused, not something else.
    token = csrf_of(victim.get(f"/ui/generations/{gen_id}").text)
    ok = victim.post(url, data={"csrf_token": token}, follow_redirects=False)
    assert ok.status_code == 303
    assert generations_read.get_visible(engine, gen_id, None).status == GenerationStatus.CANCELLED


def test_sign_in_post_needs_the_forms_token(client: TestClient, people: People) -> None:
    data = {"api_key": people.user.api_key, "csrf_token": "x"}
    r = client.post("/ui/sign-in", data=data, follow_redirects=False)
    assert r.status_code == 403
    assert "set-cookie" not in r.headers
    assert client.get("/ui/generations", follow_redirects=False).status_code == 303


def test_sign_out_drops_the_cookie(client: TestClient, people: People) -> None:
    signed_in_client(client, people.user.api_key)
    token = csrf_of(client.get("/ui/generations").text)
    r = client.post("/ui/sign-out", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303
    assert client.get("/ui/generations", follow_redirects=False).status_code == 303


def test_sign_out_revokes_a_copied_cookie(
    client: TestClient, make_client: Callable[[], TestClient], people: People, engine: Engine
) -> None:
    """Signing out ends the session on the server: a copy of the cookie taken before (another
    browser, a stolen cookie) is refused afterwards, while a second sign-in stays valid."""
    signed_in_client(client, people.user.api_key)
    copied = client.cookies.get("posegen_session", path="/ui")
    assert copied
    thief, laptop = make_client(), make_client()
    thief.cookies.set("posegen_session", copied, path="/ui")
    assert thief.get("/ui/generations", follow_redirects=False).status_code == 200
    signed_in_client(laptop, people.user.api_key)  # the same user elsewhere: unaffected

    token = csrf_of(client.get("/ui/generations").text)
    out = client.post("/ui/sign-out", data={"csrf_token": token}, follow_redirects=False)
    assert out.status_code == 303

    refused = thief.get("/ui/generations", follow_redirects=False)
    assert refused.status_code == 303 and "/ui/sign-in" in refused.headers["location"]
    assert laptop.get("/ui/generations", follow_redirects=False).status_code == 200
    with engine.connect() as conn:  # only the laptop's session is left
        assert conn.execute(select(func.count()).select_from(WebSessionRow)).scalar_one() == 1


def test_secret_file_is_private_and_reused(settings: Settings, tmp_path: Path) -> None:
    first = load_secret(settings)
    path = settings.data_dir / SECRET_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(first) == 64 and load_secret(settings) == first
    configured = settings.model_copy(update={"session_secret": SecretStr("from-the-env")})
    assert load_secret(configured) == "from-the-env"

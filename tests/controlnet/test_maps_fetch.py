"""Safe fetching against a real origin: redirects, deadlines, byte caps, status, proxies."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from maps_origin import Origin, image_bytes

from posegen.config import Settings
from posegen.controlnet import MapCache, load_image
from posegen.controlnet.fetch import Fetcher, FetchPolicy
from posegen.controlnet.netguard import AddressPolicy
from posegen.exceptions import FetchError


def _fetch_error(settings: Settings, url: str) -> FetchError:
    cache = MapCache(settings)
    try:
        with pytest.raises(FetchError) as err:
            cache.load(url)
        assert cache.usage().entries == 0, "a failed load must cache nothing"
    finally:
        cache.close()
    return err.value


def test_redirect_is_followed_and_revalidated(origin: Origin, cache: MapCache) -> None:
    target = origin.add("/final.png", image_bytes())
    origin.add("/hop", status=302, headers={"Location": "/final.png"})
    result = cache.load(origin.url("/hop"))
    assert result is not None
    assert origin.count("/hop") == 1 and origin.count("/final.png") == 1
    assert target.endswith("/final.png")


def test_redirect_to_a_blocked_address_is_refused(origin: Origin, make_settings: Any) -> None:
    # Only the name "localhost" is trusted; a redirect to 127.0.0.1 itself must be re-checked.
    origin.add("/secret.png", image_bytes())
    origin.add("/jump", status=301, headers={"Location": origin.url("/secret.png")})
    settings = make_settings(fetch_allowlist="localhost")
    err = _fetch_error(settings, origin.url("/jump", host="localhost"))
    assert err.kind == "blocked-address"
    assert origin.count("/jump") == 1 and origin.count("/secret.png") == 0


@pytest.mark.parametrize(
    "location",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:a9fe:a9fe]/",
        "http://2130706433/",
    ],
)
def test_redirects_to_metadata_and_loopback_forms_are_refused(
    origin: Origin, make_settings: Any, location: str
) -> None:
    origin.add("/r", status=302, headers={"Location": location})
    err = _fetch_error(
        make_settings(fetch_allowlist="localhost"), origin.url("/r", host="localhost")
    )
    assert err.kind == "blocked-address"


def test_redirect_to_another_scheme_is_refused(origin: Origin, cache: MapCache) -> None:
    origin.add("/r", status=302, headers={"Location": "file:///etc/passwd"})
    with pytest.raises(FetchError) as err:
        cache.load(origin.url("/r"))
    assert err.value.kind == "bad-scheme"


def test_redirect_loop_stops_at_the_limit(origin: Origin, make_settings: Any) -> None:
    origin.add("/loop", status=302, headers={"Location": "/loop"})
    err = _fetch_error(make_settings(fetch_max_redirects=3), origin.url("/loop"))
    assert err.kind == "too-many-redirects"
    assert origin.count("/loop") == 4  # the first request and three redirects


def test_the_host_name_is_sent_while_connecting_to_the_checked_address(
    origin: Origin, make_settings: Any
) -> None:
    origin.add("/h.png", image_bytes())
    cache = MapCache(make_settings(fetch_allowlist="localhost"))
    try:
        assert cache.load(origin.url("/h.png", host="localhost")) is not None
    finally:
        cache.close()
    assert origin.hosts[-1] == f"localhost:{origin.port}"


def test_http_error_status(origin: Origin, msettings: Settings) -> None:
    origin.add("/gone.png", b"nope", status=404)
    assert _fetch_error(msettings, origin.url("/gone.png")).kind == "http-status"
    origin.add("/boom.png", b"oops", status=500)
    assert _fetch_error(msettings, origin.url("/boom.png")).kind == "http-status"


def test_connection_refused(msettings: Settings) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert _fetch_error(msettings, f"http://127.0.0.1:{port}/x.png").kind == "connect"


def test_oversized_body_declared(origin: Origin, make_settings: Any) -> None:
    origin.add("/big.png", b"x" * 5000)
    assert _fetch_error(make_settings(fetch_max_bytes=4096), origin.url("/big.png")).kind == (
        "too-large"
    )


def test_oversized_body_without_length_is_cut_while_streaming(
    origin: Origin, make_settings: Any
) -> None:
    origin.add("/stream.png", b"x" * 300_000, no_length=True)
    assert (
        _fetch_error(make_settings(fetch_max_bytes=100_000), origin.url("/stream.png")).kind
        == "too-large"
    )


def test_lying_small_content_length_does_not_lift_the_cap(origin: Origin) -> None:
    origin.add("/liar.png", b"x" * 50_000, headers={"Content-Length": "10"})
    policy = FetchPolicy(AddressPolicy.from_items(["127.0.0.1"]), 3.0, 1000, 0)
    fetcher = Fetcher(policy)
    try:
        data = fetcher.fetch(origin.url("/liar.png")).data
    finally:
        fetcher.close()
    # The client trusts the framing the server declared, never more than the cap.
    assert len(data) <= 1000


def test_slow_headers_hit_the_deadline(origin: Origin, make_settings: Any) -> None:
    origin.add("/slow.png", image_bytes(), delay=6.0)
    started = time.monotonic()
    err = _fetch_error(make_settings(fetch_timeout_seconds=0.5), origin.url("/slow.png"))
    assert err.kind == "timeout"
    assert time.monotonic() - started < 4.0  # gave up long before the origin answered


def test_trickling_server_hits_the_overall_deadline(origin: Origin, make_settings: Any) -> None:
    # One byte every 50 ms: each read is quick, so only an overall deadline stops it.
    body = image_bytes(size=(64, 64))
    origin.add("/trickle.png", body, trickle=0.05)
    assert len(body) * 0.05 > 4.0  # the whole body would take longer than we allow below
    started = time.monotonic()
    err = _fetch_error(make_settings(fetch_timeout_seconds=0.6), origin.url("/trickle.png"))
    assert err.kind == "timeout"
    assert time.monotonic() - started < 4.0


def test_environment_proxies_are_ignored(
    origin: Origin, cache: MapCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # discard port: would fail if used
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    url = origin.add("/p.png", image_bytes())
    assert cache.load(url) is not None
    assert origin.count("/p.png") == 1


def test_load_image_returns_rgb_at_its_own_size(origin: Origin, msettings: Settings) -> None:
    url = origin.add(
        "/subject.png", image_bytes(size=(130, 70), mode="RGBA", colour=(1, 2, 3, 255))
    )
    img = load_image(msettings, url)
    assert img.mode == "RGB" and img.size == (130, 70)
    assert img.getpixel((5, 5)) == (1, 2, 3)


def test_no_httpx_error_escapes(origin: Origin, msettings: Settings) -> None:
    """Every failure mode above surfaces as FetchError; nothing from httpx leaks."""
    # Promises 100 bytes, sends none, hangs up.
    origin.add("/reset", b"", headers={"Content-Length": "100", "Connection": "close"})
    with pytest.raises(FetchError) as err:
        load_image(msettings, origin.url("/reset"))
    assert err.value.kind in {"connect", "timeout"}
    assert err.value.__cause__ is not None


def test_https_certificates_are_verified_against_the_host_name(
    make_settings: Any, tmp_path: Path
) -> None:
    """A self-signed certificate is refused: TLS is verified although we connect by address."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl command not available to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    tls = Origin(host="127.0.0.1")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    tls._server.socket = context.wrap_socket(tls._server.socket, server_side=True)
    tls.add("/x.png", image_bytes())
    tls.start()
    try:
        err = _fetch_error(
            make_settings(fetch_allowlist="localhost"), f"https://localhost:{tls.port}/x.png"
        )
    finally:
        tls.stop()
    assert err.kind == "connect"
    assert "certificate" in err.message.lower()

"""Download one URL safely: http(s) only, validated addresses, redirects re-checked, one overall
deadline, a streamed byte cap and no environment proxies. httpx errors become ``FetchError``
here and nowhere else."""

from __future__ import annotations

import ipaddress
import threading
import time
from dataclasses import dataclass
from urllib.parse import SplitResult, urljoin, urlsplit, urlunsplit

import httpx

from posegen.config import Settings
from posegen.controlnet.netguard import AddressPolicy, IPAddress
from posegen.controlnet.sources import canonical_url
from posegen.exceptions import FetchError

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class FetchPolicy:
    """The limits of one download, taken from settings."""

    addresses: AddressPolicy
    timeout: float
    max_bytes: int
    max_redirects: int

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchPolicy:
        return cls(
            AddressPolicy.from_items(settings.fetch_allowlist_items),
            settings.fetch_timeout_seconds,
            settings.fetch_max_bytes,
            settings.fetch_max_redirects,
        )


@dataclass(frozen=True)
class Fetched:
    data: bytes
    final_url: str
    content_type: str | None
    redirects: int


class Fetcher:
    """A pooled, thread-safe client; one per process is enough."""

    def __init__(self, policy: FetchPolicy) -> None:
        self.policy = policy
        # trust_env=False: HTTP(S)_PROXY and .netrc must not redirect or authenticate fetches.
        # No keep-alive: connections are pooled by address, so a TLS connection verified for
        # one host name could otherwise carry a request for another name on the same address.
        self._client = httpx.Client(
            trust_env=False,
            follow_redirects=False,
            limits=httpx.Limits(max_keepalive_connections=0),
            headers={"User-Agent": "posegen-maps/1", "Accept-Encoding": "identity"},
        )

    def close(self) -> None:
        self._client.close()

    def fetch(self, url: str) -> Fetched:
        """GET ``url`` within the policy, following at most ``max_redirects`` redirects."""
        deadline = time.monotonic() + self.policy.timeout
        current = canonical_url(url)
        for hop in range(self.policy.max_redirects + 1):
            response = self._open(current, deadline)
            try:
                if response.status_code in _REDIRECTS:
                    location = response.headers.get("location")
                    if not location:
                        raise FetchError(
                            f"HTTP {response.status_code} without Location from {current}",
                            kind="http-status",
                        )
                    # Each hop is canonicalised (scheme check) and resolved again in _open.
                    current = canonical_url(urljoin(current, location))
                    continue
                if not 200 <= response.status_code < 300:
                    raise FetchError(
                        f"HTTP {response.status_code} from {current}", kind="http-status"
                    )
                data = self._read_capped(response, deadline, current)
                return Fetched(data, current, response.headers.get("content-type"), hop)
            finally:
                response.close()
        raise FetchError(
            f"more than {self.policy.max_redirects} redirects starting at {url}",
            kind="too-many-redirects",
        )

    def _open(self, url: str, deadline: float) -> httpx.Response:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = self.policy.addresses.resolve(host, port, _remaining(deadline, url))
        last_error: Exception | None = None
        for ip in addresses:
            remaining = _remaining(deadline, url)
            request = self._client.build_request(
                "GET",
                _with_address(parts, ip, port),
                headers={"Host": parts.netloc.rsplit("@", 1)[-1]},
                timeout=httpx.Timeout(remaining),
                # TLS must name (and verify) the host, not the address we connect to.
                extensions={"sni_hostname": host},
            )
            try:
                return self._client.send(request, stream=True)
            except httpx.ConnectError as exc:
                last_error = exc
            except httpx.TimeoutException as exc:
                raise FetchError(f"timed out connecting to {url}", kind="timeout") from exc
            except httpx.HTTPError as exc:
                raise _network_error(exc, url, deadline) from exc
        raise FetchError(f"cannot connect to {url}: {last_error}", kind="connect") from last_error

    def _read_capped(self, response: httpx.Response, deadline: float, url: str) -> bytes:
        limit = self.policy.max_bytes
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise FetchError(f"{url} is {declared} bytes, over the {limit} cap", kind="too-large")
        expired = threading.Event()
        watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), _cut, (response, expired))
        watchdog.daemon = True
        watchdog.start()
        chunks: list[bytes] = []
        total = 0
        try:
            for chunk in response.iter_raw(_CHUNK):
                total += len(chunk)
                if total > limit:
                    raise FetchError(f"{url} is over the {limit}-byte cap", kind="too-large")
                chunks.append(chunk)
                # Per-read timeouts never stop a server that trickles a byte at a time.
                _remaining(deadline, url)
        except httpx.HTTPError as exc:
            raise _network_error(exc, url, deadline, expired.is_set()) from exc
        finally:
            watchdog.cancel()
        if expired.is_set():
            raise FetchError(f"download of {url} passed its deadline", kind="timeout")
        return b"".join(chunks)


def _cut(response: httpx.Response, expired: threading.Event) -> None:
    """At the deadline, shut the socket so a read blocked on a silent server returns."""
    expired.set()
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if sock is not None:
        try:
            sock.shutdown(2)
        except OSError:
            pass


def _remaining(deadline: float, url: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise FetchError(f"download of {url} passed its deadline", kind="timeout")
    return left


def _network_error(
    exc: httpx.HTTPError, url: str, deadline: float, expired: bool = False
) -> FetchError:
    if expired or isinstance(exc, httpx.TimeoutException) or time.monotonic() >= deadline:
        return FetchError(f"download of {url} passed its deadline", kind="timeout")
    return FetchError(f"network error fetching {url}: {exc}", kind="connect")


def _with_address(parts: SplitResult, ip: IPAddress, port: int) -> str:
    literal = f"[{ip}]" if isinstance(ip, ipaddress.IPv6Address) else str(ip)
    userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit((parts.scheme, f"{userinfo}{literal}:{port}", parts.path, parts.query, ""))

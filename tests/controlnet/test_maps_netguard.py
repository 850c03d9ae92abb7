"""Address blocking: every spelling of a non-public address is refused before connecting."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from maps_origin import Origin, image_bytes

from posegen.config import Settings
from posegen.controlnet import MapCache, load_image
from posegen.controlnet.netguard import AddressPolicy, is_public
from posegen.exceptions import FetchError

BLOCKED = [
    "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "0.0.0.0",
    "100.64.0.1", "224.0.0.1", "192.0.0.8", "192.88.99.1", "255.255.255.255", "198.18.0.1",
    "::1", "::", "fe80::1", "fc00::1", "fd00:ec2::254", "ff02::1",
    "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::127.0.0.1", "::7f00:1",
    "2002:7f00:1::", "2002:a9fe:a9fe::1", "64:ff9b::a00:1", "64:ff9b::7f00:1", "64:ff9b:1::1",
    "2001:0:4136:e378:8000:63bf:80ff:fffe", "2001:db8::1", "5f00::1", "3fff::1",
]  # fmt: skip
PUBLIC = ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111", "2a00:1450:4001:80b::200e"]


@pytest.mark.parametrize("address", BLOCKED)
def test_non_public_addresses_are_blocked(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


def test_allow_list_admits_names_addresses_and_networks() -> None:
    policy = AddressPolicy.from_items(["Localhost", "10.0.0.0/8", "192.168.1.5"])
    assert policy.allows("localhost", ipaddress.ip_address("127.0.0.1"))
    assert policy.allows("other", ipaddress.ip_address("10.9.8.7"))
    assert policy.allows("other", ipaddress.ip_address("192.168.1.5"))
    assert not policy.allows("other", ipaddress.ip_address("192.168.1.6"))
    assert not policy.allows("other", ipaddress.ip_address("127.0.0.1"))


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "2130706433",  # decimal
        "0177.0.0.1",  # octal
        "0x7f.0.0.1",  # hex
        "127.1",  # short form
        "[::ffff:127.0.0.1]",  # IPv4-mapped IPv6
        "[::ffff:7f00:1]",
        "localhost",
    ],
)
def test_loopback_spellings_are_refused_without_reaching_the_origin(
    origin: Origin, make_settings: object, host: str
) -> None:
    origin.add("/m.png", image_bytes())
    settings: Settings = make_settings(fetch_allowlist="")  # type: ignore[operator]
    cache = MapCache(settings)
    try:
        with pytest.raises(FetchError) as err:
            cache.load(origin.url("/m.png", host=host))
    finally:
        cache.close()
    assert err.value.kind == "blocked-address"
    assert origin.count("/m.png") == 0
    assert cache.usage().entries == 0
    assert cache.stats()["errors_blocked-address"] == 1


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 form of the metadata address
        "http://[2002:a9fe:a9fe::]/",  # 6to4 form
        "http://10.0.0.1/x.png",
        "http://0/x.png",
    ],
)
def test_metadata_and_private_targets_are_refused(make_settings: object, url: str) -> None:
    settings: Settings = make_settings(fetch_allowlist="")  # type: ignore[operator]
    with pytest.raises(FetchError) as err:
        load_image(settings, url)
    assert err.value.kind == "blocked-address"


def test_allow_listed_private_address_is_fetched(origin: Origin, cache: MapCache) -> None:
    url = origin.add("/ok.png", image_bytes())
    result = cache.load(url)
    assert result is not None and result.outcome == "miss"
    assert origin.count("/ok.png") == 1


def test_unresolvable_host_is_a_clear_error(make_settings: Any) -> None:
    settings: Settings = make_settings(fetch_allowlist="", fetch_timeout_seconds=2.0)
    with pytest.raises(FetchError) as err:
        load_image(settings, "http://no-such-host.invalid/x.png")
    # No resolver in a sandbox ends as a timeout of the lookup; a resolver answers NXDOMAIN.
    assert err.value.kind in {"connect", "timeout"}

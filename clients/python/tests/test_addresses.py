"""The client address the integrations pass with each verification (for IP allowlists
and the failed-verification limiter)."""

from keyhaven.gateway import client_address


def test_without_proxies_the_socket_is_the_client() -> None:
    assert client_address("10.0.0.9", "203.0.113.7", 0) == "10.0.0.9"


def test_behind_proxies_the_trusted_hop_is_the_client_and_never_the_proxy() -> None:
    xff = "203.0.113.7, 198.51.100.1 ,10.1.1.1"
    assert client_address("10.0.0.9", xff, 1) == "10.1.1.1"
    assert client_address("10.0.0.9", xff, 3) == "203.0.113.7"
    # Too short, unreadable or missing: no address (a key with an allowlist is then
    # refused), never the socket's, which is a proxy's.
    assert client_address("10.0.0.9", xff, 4) is None
    assert client_address("10.0.0.9", "junk", 1) is None
    assert client_address("10.0.0.9", "203.0.113.7:5555", 1) is None
    assert client_address("10.0.0.9", None, 1) is None

"""The client's address, which allowlists and login limits key on: the socket's peer locally, API
Gateway's sourceIp when deployed, and X-Forwarded-For only when that peer is a trusted proxy."""

from __future__ import annotations

import httpx
import pytest

from chalicelib.api.http import forwarded_client
from chalicelib.config import Settings
from tests.api.conftest import in_process

HELLO = {"model": "deepseek-chat", "messages": [{"role": "user", "content": "Hello"}]}
PROXY = "192.0.2.10"  # inside the stack's TRUSTED_PROXIES


@pytest.fixture
def pinned_key(stack, upstream) -> str:
    """A key that may be used from 203.0.113.5 only."""
    account_id, _ = stack.customer("1")
    return stack.admin("POST", f"/admin/accounts/{account_id}/keys",
                       {"name": "pinned", "allowed_ips": ["203.0.113.5/32"]})["key"]


def relay(client: httpx.Client, key: str, forwarded_for: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    return client.post("/v1/chat/completions", json=HELLO, headers=headers)


def test_the_peer_address_is_the_client(stack, pinned_key):
    from app import app

    assert relay(in_process(app, client_ip="203.0.113.5"), pinned_key).status_code == 200
    refused = relay(in_process(app, client_ip="203.0.113.6"), pinned_key)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "ip_not_allowed"
    assert "203.0.113.6" in refused.json()["error"]["message"]


def test_a_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(stack, pinned_key):
    from app import app

    spoofer = in_process(app, client_ip="198.51.100.7")
    for header in ("203.0.113.5", f"203.0.113.5, {PROXY}", "203.0.113.5, 198.51.100.7"):
        refused = relay(spoofer, pinned_key, forwarded_for=header)
        assert refused.status_code == 403, header
        assert "198.51.100.7" in refused.json()["error"]["message"]


def test_a_trusted_proxy_is_believed_up_to_the_first_address_it_does_not_trust(stack, pinned_key):
    from app import app

    proxy = in_process(app, client_ip=PROXY)
    assert relay(proxy, pinned_key, forwarded_for="203.0.113.5").status_code == 200
    # The client may write anything to the left of what the proxy appended: it is not read.
    assert relay(proxy, pinned_key, forwarded_for="10.0.0.1, 203.0.113.5").status_code == 200
    assert relay(proxy, pinned_key, forwarded_for=f"203.0.113.5, {PROXY}").status_code == 200
    refused = relay(proxy, pinned_key, forwarded_for="203.0.113.5, 198.51.100.8")
    assert refused.status_code == 403 and "198.51.100.8" in refused.json()["error"]["message"]


def test_the_server_takes_the_address_from_the_socket(stack, upstream):
    # Every loopback address is this machine; chalice local reported each caller as 127.0.0.1.
    account_id, _ = stack.customer("1")
    key = stack.admin("POST", f"/admin/accounts/{account_id}/keys",
                      {"name": "pinned", "allowed_ips": ["127.0.0.2/32"]})["key"]
    from_two = httpx.Client(base_url=stack.url, transport=httpx.HTTPTransport(local_address="127.0.0.2"))
    from_one = httpx.Client(base_url=stack.url, transport=httpx.HTTPTransport(local_address="127.0.0.1"))
    with from_two, from_one:
        assert relay(from_two, key).status_code == 200
        assert relay(from_one, key).status_code == 403
        assert relay(from_one, key, forwarded_for="127.0.0.2").status_code == 403


@pytest.mark.parametrize("peer, header, client", [
    ("203.0.113.1", None, "203.0.113.1"),
    ("203.0.113.1", "1.2.3.4", "203.0.113.1"),
    ("10.0.0.2", "1.2.3.4", "1.2.3.4"),
    ("10.0.0.2", "1.2.3.4, 10.0.0.3", "1.2.3.4"),
    ("10.0.0.2", "9.9.9.9, 1.2.3.4, 10.0.0.3", "1.2.3.4"),
    ("10.0.0.2", "", "10.0.0.2"),
    ("10.0.0.2", "10.0.0.5", "10.0.0.5"),
    ("10.0.0.2", "not-an-address", "10.0.0.2"),
    ("10.0.0.2", " 2001:db8::1 ", "2001:db8::1"),
    (None, "1.2.3.4", None),
])
def test_forwarded_client_walks_back_only_through_trusted_proxies(peer, header, client):
    trusted = Settings(trusted_proxies="10.0.0.0/8").trusted_proxies
    assert forwarded_client(peer, header, trusted) == client


def test_trusted_proxies_are_read_from_the_environment_as_cidrs(monkeypatch):
    monkeypatch.setenv("TOKENWAY_TRUSTED_PROXIES", "10.0.0.0/8, 2001:db8::/32,192.0.2.7")
    assert [str(n) for n in Settings().trusted_proxies] == ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7/32"]
    monkeypatch.delenv("TOKENWAY_TRUSTED_PROXIES")
    assert Settings().trusted_proxies == ()

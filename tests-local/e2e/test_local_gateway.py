"""The local gateway (local-runtime/plugin, ``server.py``): LocalStack's twisted server as the
local runtime runs it, listening on loopback only and keeping HTTP/1.1 connections open."""

from __future__ import annotations

import http.client
import socket
from urllib.parse import urlsplit

import pytest
from conftest import ENDPOINT

pytestmark = pytest.mark.e2e
PORT = urlsplit(ENDPOINT).port or 80


def other_addresses() -> list[str]:
    """This machine's IPv4 addresses that are not loopback."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("198.51.100.1", 9))  # UDP: nothing is sent, the route picks an address
        addresses = {probe.getsockname()[0]}
    except OSError:
        addresses = set()
    finally:
        probe.close()
    addresses |= {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None,
                                                             socket.AF_INET)}
    return sorted(a for a in addresses if not a.startswith("127."))


def test_the_gateway_cannot_be_reached_from_the_network() -> None:
    addresses = other_addresses()
    if not addresses:
        pytest.skip("this machine has no address but loopback")
    for address in addresses:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((address, PORT), timeout=5).close()


def test_the_gateway_keeps_a_connection_for_the_next_request() -> None:
    connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
    try:
        for _ in range(3):
            connection.request("GET", "/_localstack/health")
            response = connection.getresponse()
            response.read()
            assert response.status == 200
            assert response.getheader("Connection", "").lower() != "close"
        local_port = connection.sock.getsockname()[1]
        connection.request("GET", "/_localstack/health")
        connection.getresponse().read()
        assert connection.sock.getsockname()[1] == local_port
    finally:
        connection.close()

"""How --url names Triton replicas: one address, several, or a DNS name of several."""

from __future__ import annotations

import pytest

from client.replicas import BadAddress, Replicas, resolve, split_url


def test_one_address_several_addresses_and_a_dns_name():
    assert split_url("127.0.0.1:8001") == (["127.0.0.1:8001"], None)
    assert split_url("a:8001, b:8001,a:8001") == (["a:8001", "b:8001"], None)
    assert split_url("dns:///triton.logad.svc:8001") == ([], "triton.logad.svc:8001")


@pytest.mark.parametrize("url", ["", "triton", "http://a:8001", "dns:///triton", "a:port"])
def test_an_address_that_names_no_server_is_refused_in_one_line(url):
    with pytest.raises(BadAddress):
        split_url(url)


def test_a_dns_name_resolves_to_each_of_its_addresses():
    assert resolve("localhost:8001") and all(a.endswith(":8001") for a in resolve("localhost:8001"))
    assert resolve("no-such-host.invalid:8001") == []


class _Client:
    def __init__(self, address):
        self.address, self.closed = address, False

    def close(self):
        self.closed = True


def test_requests_take_turns_and_a_replica_set_aside_is_tried_last():
    replicas = Replicas("a:1,b:2,c:3", _Client)
    firsts = [replicas.rotation()[0].address for _ in range(3)]
    assert sorted(firsts) == ["a:1", "b:2", "c:3"]
    down = replicas.all()[0]
    replicas.set_aside(down)
    for _ in range(3):
        order = replicas.rotation()
        assert order[-1] is down and len(order) == 3

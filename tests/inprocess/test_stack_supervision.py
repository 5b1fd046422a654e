"""Which process holds a port: a listening socket in this process, found through /proc."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from eyeops.errors import EyeopsError
from eyeops.stack.process import PortInUse, ensure_ports_free, free_port, port_is_free, port_owner


@pytest.fixture(params=[socket.AF_INET, socket.AF_INET6], ids=["ipv4", "ipv6"])
def listening(request: pytest.FixtureRequest) -> Iterator[int]:
    family = request.param
    with socket.socket(family) as s:
        s.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_port_owner_finds_this_process(listening: int) -> None:
    owner = port_owner(listening)
    assert owner is not None
    assert owner.pid == os.getpid()
    assert "python" in owner.command or "pytest" in owner.command


def test_a_taken_port_fails_with_one_line_naming_pid_and_option(listening: int) -> None:
    assert not port_is_free(listening)
    with pytest.raises(PortInUse) as caught:
        ensure_ports_free([(free_port(), "--monitor-port"), (listening, "--ocr-port")])
    message = str(caught.value)
    assert isinstance(caught.value, EyeopsError) and "\n" not in message
    assert message.startswith(f"port {listening} is in use by pid {os.getpid()} (")
    assert message.endswith("stop it (a stale eyeops stack?) or pass --ocr-port")


def test_free_ports_pass_and_a_port_asked_for_twice_does_not() -> None:
    port = free_port()
    assert port_owner(port) is None
    ensure_ports_free([(port, "--ocr-port"), (free_port(), "--lens-port")])
    with pytest.raises(PortInUse, match=f"port {port} is asked for twice"):
        ensure_ports_free([(port, "--ocr-port"), (port, "--lens-port")])

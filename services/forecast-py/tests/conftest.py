"""Fixtures: a real forecast agent on a loopback port, and a client."""

from __future__ import annotations

from typing import Iterator

import grpc
import pytest

from agentmesh_forecast.protos import rpc
from agentmesh_forecast.server import Server, Settings


@pytest.fixture
def make_agent() -> Iterator:
    started: list[tuple[Server, grpc.Channel]] = []

    def make(**settings):
        server = Server("127.0.0.1:0", Settings(**settings))
        server.start()
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        started.append((server, channel))
        return server, rpc.AgentServiceStub(channel), channel

    yield make
    for server, channel in started:
        channel.close()
        server.stop()


@pytest.fixture
def agent(make_agent):
    _, stub, _ = make_agent()
    return stub

"""Fixtures shared by the fault tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from hn.dht.node import DhtNode
from tests.integration.test_dht_network import dht_network


@pytest.fixture
async def network() -> AsyncIterator[list[DhtNode]]:
    """Twenty real DHT nodes on 127.0.0.1, joined; stopped afterwards."""
    async with dht_network(20) as nodes:
        yield nodes

"""The room registry's leases: only a lease that may create a room brings one into being."""

from __future__ import annotations

import asyncio

import pytest

from collab_server.rooms.registry import RoomRegistry
from collab_server.settings import Settings
from persistence import RoomMissing
from persistence.memory import MemoryStore

pytestmark = pytest.mark.anyio


async def test_a_lease_that_may_not_create_finds_no_room_and_makes_none() -> None:
    store = MemoryStore()
    async with RoomRegistry(store, Settings(store_url="memory://")) as registry:
        with pytest.raises(RoomMissing):
            async with registry.lease("absent", create=False):
                pass
        assert await store.get_room("absent") is None
        async with registry.lease("absent") as room:  # a joining editor's lease creates it
            assert room.id == "absent"
        async with registry.lease("absent", create=False) as again:
            assert again is room


async def test_a_creating_lease_that_joins_a_load_which_may_not_create_still_gets_its_room() -> (
    None
):
    store = MemoryStore()
    async with RoomRegistry(store, Settings(store_url="memory://")) as registry:

        async def watch() -> str:
            try:
                async with registry.lease("new", create=False) as room:
                    return room.id
            except RoomMissing:
                return "missing"

        async def join() -> str:
            async with registry.lease("new") as room:
                return room.id

        watched, joined = await asyncio.gather(watch(), join())  # the viewer's load goes first
        assert joined == "new"
        assert watched in ("new", "missing")
        assert await store.get_room("new") is not None

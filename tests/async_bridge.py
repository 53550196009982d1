"""One scenario, three APIs: drive an AsyncClient from synchronous test code (its coroutines run
on one event loop), so the congruence tests compare Index, Client and AsyncClient step by step."""

from __future__ import annotations

import asyncio

from simsearch.aio_client import AsyncClient
from simsearch.errors import SimsearchError


class SyncAsync:
    """Runs an async client's coroutines on one loop, so one scenario drives all three APIs."""

    def __init__(self, obj, loop):
        self._obj, self._loop = obj, loop

    @property
    def name(self):
        return self._obj.name

    @property
    def config(self):
        return self._obj.config

    def __getattr__(self, attr):
        fn = getattr(self._obj, attr)

        def call(*args, **kwargs):
            out = self._loop.run_until_complete(fn(*args, **kwargs))
            return SyncAsync(out, self._loop) if type(out).__name__ == "AsyncRemoteCollection" else out

        return call


def async_scenario(address: str, scenario, wrap=SyncAsync):
    """``scenario(wrap(client, loop))`` against an AsyncClient of ``address`` on a fresh loop."""
    loop = asyncio.new_event_loop()
    try:
        async def connect():  # the grpc.aio channel belongs to the loop that creates it
            return AsyncClient(address)

        client = loop.run_until_complete(connect())
        log = scenario(wrap(client, loop))
        loop.run_until_complete(client.close())
    finally:
        loop.close()
    return log


def recorder() -> tuple[list, object]:
    """(log, step): ``step(fn)`` appends ("ok", fn()) or ("error", type name, message) of a
    SimsearchError, so a scenario's log compares equal across the three APIs."""
    log: list = []

    def step(fn):
        try:
            log.append(("ok", fn()))
        except SimsearchError as exc:
            log.append(("error", type(exc).__name__, str(exc)))

    return log, step

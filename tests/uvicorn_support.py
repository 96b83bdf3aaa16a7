"""An ASGI app under uvicorn, in this process, on a free port of 127.0.0.1 (loopback only)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import uvicorn
from websockets.asyncio.client import connect


@asynccontextmanager
async def in_process(app: Any, **config: Any) -> AsyncIterator[tuple[uvicorn.Server, int]]:
    """Serve ``app`` with uvicorn's ``config`` (no log config by default) until the block
    ends; yield the server and its port once it has started."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, **({"log_config": None} | config)))
    with sock:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            with anyio.fail_after(10):
                while not server.started:  # noqa: ASYNC110 - uvicorn has no started event
                    await anyio.sleep(0.01)
            try:
                yield server, port
            finally:
                server.should_exit = True


def loopback(address: str, path: str, **kwargs: Any) -> connect:
    """A ``websockets`` client for a loopback server (never through a proxy)."""
    return connect(f"ws://{address}{path}", proxy=None, compression=None, **kwargs)

"""A small OpenAI-compatible HTTP server (POST /v1/chat/completions) for the AI provider tests.

It is a real uvicorn server on a pre-bound port. `mode` picks how it answers; every request is
recorded, `received` fires when one arrives, and in "hold" mode the answer waits for `release`.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

Mode = Literal["answer", "error", "garbage", "hold"]


class FakeLlm:
    def __init__(self, continuation: str) -> None:
        self.continuation = continuation
        self.mode: Mode = "answer"
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.received = anyio.Event()
        self.release = anyio.Event()
        self.url = ""

    async def chat_completions(self, request: Request) -> Response:
        self.requests.append(json.loads(await request.body()))
        self.headers.append(dict(request.headers))
        self.received.set()
        if self.mode == "error":
            return JSONResponse({"error": {"message": "overloaded"}}, status_code=500)
        if self.mode == "garbage":
            return JSONResponse({"unexpected": True})
        if self.mode == "hold":
            await self.release.wait()
        return JSONResponse(
            {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "model": self.requests[-1]["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": self.continuation},
                        "finish_reason": "stop",
                    }
                ],
            }
        )


@asynccontextmanager
async def fake_llm(continuation: str) -> AsyncIterator[FakeLlm]:
    fake = FakeLlm(continuation)
    app = Starlette(routes=[Route("/v1/chat/completions", fake.chat_completions, methods=["POST"])])
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    fake.url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    config = uvicorn.Config(app, loop="asyncio", log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        yield fake
    finally:
        fake.release.set()  # a held request must end before the server can stop
        server.should_exit = True
        await task
        listener.close()

"""An optional AI provider: one multi-token continuation from an OpenAI-compatible HTTP API.

`POST {url}/chat/completions` (or `url` itself when it already ends so) with the code around the
cursor; the answer becomes one more item. Every failure (connection, status, timeout, a body of
the wrong shape) raises `LlmError`, which the service logs: the local providers' answer is never
held up past the deadline nor lost because of this one.
"""

from __future__ import annotations

import asyncio
import re

import httpx
from pydantic import BaseModel, ValidationError

from collab_server.completion.job import Item

CONTEXT_BEFORE = 4000  # characters of the document sent before the cursor
CONTEXT_AFTER = 1000  # and after it
MAX_TOKENS = 64
LABEL_LENGTH = 60
CURSOR = "<CURSOR>"
SYSTEM_PROMPT = (
    "You are a code completion engine inside a collaborative code editor. The user message is "
    f"a {{language}} file with the cursor marked {CURSOR}. Answer with only the text to insert at "
    "the cursor: no explanation, no Markdown fences, and do not repeat the text before it."
)
_FENCE = re.compile(r"^```[\w+-]*\n?|\n?```\s*$")


class _Message(BaseModel):
    content: str | None = None


class _Choice(BaseModel):
    message: _Message


class _ChatAnswer(BaseModel):
    choices: list[_Choice]


class LlmError(Exception):
    """The AI endpoint did not give a usable continuation."""


class LlmClient:
    def __init__(self, url: str, model: str, key: str | None, timeout: float) -> None:
        base = url.rstrip("/")
        self._endpoint = base if base.endswith("/chat/completions") else f"{base}/chat/completions"
        self._model = model
        self._timeout = timeout
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.AsyncClient(headers=headers, timeout=timeout)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def suggest(
        self, text: str, index: int, typed_from: int, language: str, budget: float
    ) -> Item | None:
        """One item continuing `text` at `index`; it replaces [typed_from, index) like the others.

        None when the model has nothing to add; `LlmError` when the endpoint fails or is late. It
        gets `budget` seconds (the request's remaining time), at most the configured timeout.
        """
        try:
            async with asyncio.timeout(min(budget, self._timeout)):
                continuation = await self._continuation(text, index, language)
        except TimeoutError as error:
            raise LlmError(f"no answer from {self._endpoint} in time") from error
        except httpx.HTTPError as error:
            raise LlmError(f"{self._endpoint}: {error!r}") from error
        typed = text[typed_from:index]
        if typed and continuation.startswith(typed):
            continuation = continuation[len(typed) :]  # the model repeated the word being typed
        if not continuation.strip():
            return None
        insert = typed + continuation
        first_line = insert.strip().splitlines()[0]
        label = first_line if len(first_line) <= LABEL_LENGTH else first_line[:LABEL_LENGTH] + "…"
        return Item(label, "text", insert, f"AI · {self._model}")

    async def _continuation(self, text: str, index: int, language: str) -> str:
        before = text[max(0, index - CONTEXT_BEFORE) : index]
        after = text[index : index + CONTEXT_AFTER]
        body = {
            "model": self._model,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT.format(language=language)},
                {"role": "user", "content": f"{before}{CURSOR}{after}"},
            ],
            "max_tokens": MAX_TOKENS,
            "temperature": 0,
            "stream": False,
        }
        response = await self._http.post(self._endpoint, json=body)
        if response.status_code != 200:
            raise LlmError(f"{self._endpoint}: HTTP {response.status_code}")
        try:
            answer = _ChatAnswer.model_validate_json(response.content)
        except ValidationError as error:
            raise LlmError(f"{self._endpoint}: not a chat completion answer") from error
        if not answer.choices or not answer.choices[0].message.content:
            return ""
        return _FENCE.sub("", answer.choices[0].message.content)

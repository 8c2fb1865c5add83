"""/metrics: what the server counts, in the Prometheus text format."""

from __future__ import annotations

import pytest

from collab_server.protocol import CloseCode
from tests.conftest import RunningServer
from tests.polling import poll
from tests.yclient import yclient

pytestmark = pytest.mark.anyio


async def scrape(server: RunningServer) -> dict[str, float]:
    """Every sample, keyed by name and labels as written (`name{label="v"}`)."""
    async with server.http() as http:
        response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = {}
    for line in response.text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            samples[key] = float(value)
    return samples


async def test_metrics_count_rooms_peers_updates_and_closes(server: RunningServer) -> None:
    before = await scrape(server)
    assert before["collab_peers"] == 0 and before["collab_store_ready"] == 1
    async with yclient(server.ws_url, "counted") as client:
        sent: list[int] = []
        client.doc.observe(lambda event: sent.append(len(event.update)))
        for _ in range(200):  # at once: the server stores them in batches, relayed merged
            client.text.insert(len(client.text), "x")
        async with yclient(server.ws_url, "counted") as watcher:
            await watcher.wait_until(lambda: str(watcher.text) == "x" * 200)
            during = await scrape(server)
            assert during["collab_peers"] == 2
            assert during["collab_rooms_loaded"] == 1
            stored = during["collab_updates_stored_total"] - before["collab_updates_stored_total"]
            assert stored == len(sent) == 200
            stored_bytes = during["collab_update_bytes_stored_total"]
            assert stored_bytes - before["collab_update_bytes_stored_total"] == sum(sent)
            assert during["collab_connections_opened_total"] == 2
        async with yclient(server.ws_url, "counted", sync=False) as rude:
            await rude.send_raw(b"\xff\xff")
            assert await rude.wait_closed() == CloseCode.BAD_MESSAGE
        async with yclient(server.ws_url, "bad%3Fname", sync=False) as misnamed:
            assert await misnamed.wait_closed() == CloseCode.BAD_MESSAGE

    async def all_gone() -> bool:  # a client's close returns before the server lets it go
        return (await scrape(server))["collab_peers"] == 0

    await poll(all_gone)
    after = await scrape(server)
    assert after['collab_connections_closed_total{code="4400"}'] == 2

"""The Starlette edge: the WebSocket endpoint and the REST routes, errors mapped to codes."""

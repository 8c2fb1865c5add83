# The server image: `docker compose up` builds it (see docker-compose.yml and docs/postgres.md).
# The web editor is prebuilt into collab_server/static, so no Node.js is needed here.
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml README.md ./
COPY collab_server ./collab_server
COPY persistence ./persistence
RUN pip install --no-cache-dir . && rm -rf /app/collab_server /app/persistence

USER nobody
ENV COLLAB_HOST=0.0.0.0 COLLAB_PORT=8000 PYTHONUNBUFFERED=1
EXPOSE 8000
CMD ["collab-server", "serve"]

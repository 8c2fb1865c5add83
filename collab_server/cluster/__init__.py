"""Cross-process fan-out: server processes sharing one PostgreSQL store relay rooms over Redis."""

"""Code completion: jedi for Python, keywords and identifiers for the other languages, an optional
AI continuation; computed in worker processes with a deadline (see `service.py`).

Nothing is imported here: each worker process imports this package first, and needs neither the
service's settings nor its HTTP client (that kept about 0.15 s off every worker's start)."""

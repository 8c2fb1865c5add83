"""A structure-aware fuzzer for the server: Yjs updates and y-protocols frames against a real
server process, with an honest client checking its own room meanwhile (see run.py)."""

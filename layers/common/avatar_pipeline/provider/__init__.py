"""Segmind's v2 async API: the wire format (wire.py) and the HTTP client (client.py)."""

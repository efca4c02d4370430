"""`avatar-pipeline emulator serve`: the emulator alone, answering on the port it is given."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_emulator_serve_answers_submits_with_the_local_key() -> None:
    port = free_port()
    process = subprocess.Popen(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "avatar_local.cli", "emulator", "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ),
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                unauthorized = httpx.post(f"{base}/v2/heygen-avatar-v", json={"prompt": "hi"})
                break
            except httpx.ConnectError:
                time.sleep(0.1)
        assert unauthorized.status_code == 401
        accepted = httpx.post(
            f"{base}/v2/heygen-avatar-v", json={"prompt": "hi"}, headers={"x-api-key": "local-dev-key"}
        )
        assert accepted.status_code == 200
        assert accepted.json()["status"] == "QUEUED"
    finally:
        process.terminate()
        process.wait(timeout=10)

"""Start `imis-lite serve` as a user does (a subprocess on 127.0.0.1, a free port) and stop it afterwards.

For the benchmark's server row and for the tests that drive the server with real clients."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_server(key: str | None, *arguments: str) -> Iterator[str]:
    """Yield the server's URL once /healthz answers; terminate it on the way out, whatever happened.
    ``key``: the API key the server requires (None: none)."""
    import httpx  # the server extra's client side; the benchmark runs without it

    port = free_port()
    env = {**os.environ}
    if key is not None:
        env["IMIS_LITE_API_KEY"] = key
    process = subprocess.Popen([sys.executable, "-m", "imis_lite.cli", "serve", "--port", str(port), *arguments],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited: {process.stdout.read() if process.stdout else ''}")
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise RuntimeError("server did not come up within 120 s")
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()

"""Start a real rerank server for tests: uvicorn in a thread, or ``rankwise serve`` in a subprocess."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time

import httpx
import uvicorn

# The CLI run in a subprocess, as an installed `rankwise` would be.
_CLI = "from rankwise.cli import main; main()"


class ThreadServer:
    """uvicorn serving ``app`` on a free loopback port, in a background thread (``settings``: uvicorn.Config's)."""

    def __init__(self, app, **settings):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", **settings))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> "ThreadServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()


class CliServer:
    """``rankwise serve ARGS --port 0`` in a subprocess; the URL is read from uvicorn's start-up line."""

    def __init__(self, args: list[str], env: dict | None = None, start_timeout: float = 180):
        self.args = args
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
        self.start_timeout = start_timeout
        self.log: list[str] = []

    def __enter__(self) -> "CliServer":
        self.proc = subprocess.Popen([sys.executable, "-c", _CLI, "serve", *self.args, "--port", "0"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=self.env)
        found: list[str] = []
        reader = threading.Thread(target=self._read, args=(found,), daemon=True)
        reader.start()
        deadline = time.monotonic() + self.start_timeout
        while not found:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("rankwise serve did not start:\n" + "".join(self.log[-30:]))
            time.sleep(0.05)
        self.url = found[0]
        return self

    def _read(self, found: list[str]) -> None:
        for line in self.proc.stderr:
            self.log.append(line)
            match = re.search(r"Uvicorn running on (http://\S+)", line)
            if match:
                found.append(match.group(1))

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(timeout)

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_for(predicate, timeout: float = 30, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(every)


def metric(url: str, name: str, headers: dict | None = None) -> float:
    """The value of one sample line of /metrics (0 if absent)."""
    text = httpx.get(f"{url}/metrics", headers=headers).text
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, flags=re.M)
    return float(match.group(1)) if match else 0.0

"""Start a real llama-cpp-python OpenAI-compatible server on a free loopback port (tests, benchmark peers).

The server runs in its own process (``python -m llama_cpp.server``), with llama.cpp's extra buffer types
turned off on AMX CPUs exactly as ``LlamaCppBackend`` turns them off in process. Its OpenMP threads wait
passively (``OMP_WAIT_POLICY=PASSIVE`` unless set): on a busy machine spinning threads made it 3-5x slower.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import httpx

from rankwise.errors import ModelError

# Runs llama_cpp.server's __main__ with the AMX workaround applied (no-op elsewhere).
_LAUNCH = (
    "import runpy, contextlib\n"
    "from rankwise.llm.engines.llamacpp import cpu_has_amx, extra_buffer_types_off\n"
    "with extra_buffer_types_off() if cpu_has_amx() else contextlib.nullcontext():\n"
    "    runpy.run_module('llama_cpp.server', run_name='__main__', alter_sys=True)\n"
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def llama_server(model: str | Path, n_ctx: int = 2048, n_threads: int | None = None,
                 start_timeout: float = 120.0) -> Iterator[str]:
    """Serve ``model`` (a GGUF file) and yield its base URL (``http://127.0.0.1:PORT/v1``); stop it after."""
    port = free_port()
    threads = str(n_threads or len(os.sched_getaffinity(0)))
    cmd = [sys.executable, "-c", _LAUNCH, "--model", str(model), "--host", "127.0.0.1",
           "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", threads,
           "--n_threads_batch", threads, "--verbose", "False"]
    base_url = f"http://127.0.0.1:{port}/v1"
    with tempfile.TemporaryFile() as log:
        env = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ}
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            _wait_ready(proc, base_url, start_timeout, log)
            yield base_url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_ready(proc: subprocess.Popen, base_url: str, timeout: float, log) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise ModelError(f"llama_cpp.server exited with {proc.returncode}:\n"
                               f"{log.read().decode(errors='replace')[-3000:]}")
        try:
            if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise ModelError(f"llama_cpp.server did not answer {base_url}/models within {timeout:g} s")

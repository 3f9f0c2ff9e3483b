"""Fault test of `rankwise serve` over loopback: a large request beside small ones, overload, slow clients.

    nice -n 10 python benchmarks/stall_test.py --label after
    nice -n 10 python benchmarks/stall_test.py --label before --server-pythonpath /tmp/before/src --old-server

Phase 1 (stall): one request of --big-docs DL19 passages, then --small requests of --small-docs passages sent
--gap seconds apart; the small requests' status and latency, the large request's status, and from /metrics
how long after its deadline the large request's last chunk finished (work computed for nothing).
Phase 2 (overload): --overload requests of --small-docs passages at --concurrency; every status is counted.
Phase 3 (slow clients, new server only): seconds until the server closes an idle connection, slow headers,
a slow body. The figures are appended to --table (benchmarks/results/reliability.md) with the command and CPU.
"""

from __future__ import annotations

import argparse
import os
import shlex
import socket
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_test import _percentile, start_server  # noqa: E402

from rankwise.cli.common import cpu_name  # noqa: E402
from rankwise.data import load_dataset  # noqa: E402

HERE = Path(__file__).resolve().parent


def bodies(dataset: str, big_docs: int, small_docs: int, n_small: int) -> tuple[dict, list[dict]]:
    """One large request (passages of several queries' BM25 top-100) and distinct small ones."""
    requests = load_dataset(dataset).requests("bm25")
    pool = [c.content for r in requests for c in r.candidates]
    big = {"query": requests[0].query.text, "documents": pool[:big_docs]}
    small = [{"query": r.query.text, "documents": [c.content for c in r.candidates[s:s + small_docs]]}
             for s in range(0, 100, small_docs) for r in requests[1:]]
    return big, small[:n_small]


def post(url: str, body: dict, timeout: float, out: list, lock: threading.Lock) -> None:
    start = time.perf_counter()
    try:
        status = httpx.post(f"{url}/v1/rerank", json=body, timeout=timeout).status_code
    except httpx.HTTPError as exc:
        status = type(exc).__name__
    with lock:
        out.append((status, time.perf_counter() - start))


def metric(url: str, name: str) -> float:
    """One sample of /metrics; NaN where the server has no such metric (the code before)."""
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return float("nan")


def stall_phase(url: str, big: dict, small: list[dict], gap: float, timeout: float) -> dict:
    lock, big_out, small_out = threading.Lock(), [], []
    threads = [threading.Thread(target=post, args=(url, big, timeout, big_out, lock))]
    threads[0].start()
    time.sleep(gap)
    for body in small:
        threads.append(threading.Thread(target=post, args=(url, body, timeout, small_out, lock)))
        threads[-1].start()
        time.sleep(gap)
    for t in threads:
        t.join()
    time.sleep(2)  # let a chunk that was running finish and be counted
    latencies = sorted(s for _, s in small_out)
    runs = metric(url, "rankwise_batch_run_seconds_count")
    return {"big": big_out[0], "small": Counter(str(s) for s, _ in small_out),
            "p50": _percentile(latencies, 50), "p99": _percentile(latencies, 99), "max": latencies[-1],
            "late_chunks": metric(url, "rankwise_batch_late_seconds_count"),
            "late_seconds": metric(url, "rankwise_batch_late_seconds_sum"),
            "chunk_seconds": metric(url, "rankwise_batch_run_seconds_sum") / max(runs, 1)}


def overload_phase(url: str, small: list[dict], n: int, concurrency: int, timeout: float) -> dict:
    lock, out, todo = threading.Lock(), [], iter((small * (n // len(small) + 1))[:n])

    def worker() -> None:
        while True:
            with lock:
                body = next(todo, None)
            if body is None:
                return
            post(url, body, timeout, out, lock)

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok = sorted(s for status, s in out if status == 200)
    return {"statuses": Counter(str(s) for s, _ in out), "sent": n, "wall": time.perf_counter() - start,
            "p50": _percentile(ok, 50) if ok else float("nan"), "p99": _percentile(ok, 99) if ok else float("nan")}


def _seconds_to_close(url: str, send: list[bytes], pause: float = 0.5, limit: float = 120) -> str:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        start = time.monotonic()
        for part in send:
            sock.sendall(part)
            time.sleep(pause)
        sock.settimeout(limit)
        data = b""
        try:
            while chunk := sock.recv(4096):
                data += chunk
        except TimeoutError:
            return f"still open after {limit:g} s"
        status = data.split(b" ", 2)[1].decode() if data else "no answer"
        return f"{time.monotonic() - start:.1f} s ({status})"


def slow_client_phase(url: str) -> dict:
    return {"idle connection (nothing sent)": _seconds_to_close(url, []),
            "slow headers (a line every 0.5 s)": _seconds_to_close(
                url, [b"POST /v1/rerank HTTP/1.1\r\n", b"Host: x\r\n", b"Content-Type: application/json\r\n"]),
            "slow body (10 of 100 bytes, then nothing)": _seconds_to_close(
                url, [b"POST /v1/rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 100\r\n\r\n{\"query\": "])}


def report(args, command: str, health: dict, stall: dict, overload: dict, slow: dict | None) -> list[str]:
    big_status, big_seconds = stall["big"]
    lines = [f"### {args.label}", "", f"`{command}`", "",
             f"CPU: {cpu_name()} ({os.cpu_count()} cores, shared with other jobs; load average "
             f"{os.getloadavg()[0]:.2f}); {health['method']} on {health['model']} ({health['engine']}, "
             f"{health['dtype']}, {args.threads} torch thread(s)), cache off; server flags: "
             f"`{args.serve_args or '(defaults)'}`.", "",
             f"Stall: one {args.big_docs}-document request, then {args.small} requests of {args.small_docs} documents "
             f"{args.gap:g} s apart.", "",
             "| large request | small requests (status: count) | small p50 (s) | small p99 (s) | small max (s) "
             "| chunks finished past their deadline | seconds of work past the deadline | mean chunk (s) |",
             "|---|---|---|---|---|---|---|---|",
             f"| {big_status} after {big_seconds:.1f} s | {dict(stall['small'])} | {stall['p50']:.2f} | "
             f"{stall['p99']:.2f} | {stall['max']:.2f} | {stall['late_chunks']:.0f} | {stall['late_seconds']:.2f} | "
             f"{stall['chunk_seconds']:.2f} |", "",
             f"Overload: {overload['sent']} requests of {args.small_docs} documents at concurrency "
             f"{args.concurrency}.", "",
             "| statuses | answered (all of them?) | p50 of 200s (s) | p99 of 200s (s) | wall (s) |",
             "|---|---|---|---|---|",
             f"| {dict(overload['statuses'])} | {sum(overload['statuses'].values())} of {overload['sent']} | "
             f"{overload['p50']:.2f} | {overload['p99']:.2f} | {overload['wall']:.1f} |"]
    if slow:
        lines += ["", "| slow client | closed after |", "|---|---|"] + [f"| {k} | {v} |" for k, v in slow.items()]
    return lines + [""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--label", default="after")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--method", default="pointwise.yes_no")
    ap.add_argument("--engine", default="transformers")
    ap.add_argument("--dataset", default="dl19")
    ap.add_argument("--big-docs", type=int, default=400)
    ap.add_argument("--small", type=int, default=15)
    ap.add_argument("--small-docs", type=int, default=10)
    ap.add_argument("--gap", type=float, default=1.0)
    ap.add_argument("--overload", type=int, default=96)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--timeout", type=float, default=300.0, help="client timeout (s)")
    ap.add_argument("--serve-args", default="--request-timeout 10", help="extra `rankwise serve` flags")
    ap.add_argument("--server-pythonpath", help="run the server from this source tree (e.g. the code before)")
    ap.add_argument("--threads", type=int, default=1,
                    help="the server's torch threads (1 on a shared machine: 2 threads on 2 busy cores spin-wait)")
    ap.add_argument("--old-server", action="store_true", help="skip what the old server cannot do")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--batch-wait-ms", type=float, default=5.0)
    ap.add_argument("--max-batch-prompts", type=int, default=128)
    ap.add_argument("--table", type=Path, default=HERE / "results" / "reliability.md")
    args = ap.parse_args()
    command = "python benchmarks/stall_test.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if args.server_pythonpath:
        os.environ["PYTHONPATH"] = args.server_pythonpath
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    proc, url = start_server(args, extra=shlex.split(args.serve_args))
    try:
        health = httpx.get(f"{url}/health").json()
        big, small = bodies(args.dataset, args.big_docs, args.small_docs, args.small + args.overload)
        httpx.post(f"{url}/v1/rerank", json=small[0], timeout=args.timeout)  # warm-up
        stall = stall_phase(url, big, small[:args.small], args.gap, args.timeout)
        print(stall, flush=True)
        overload = overload_phase(url, small[args.small:], args.overload, args.concurrency, args.timeout)
        print(overload, flush=True)
        slow = None if args.old_server else slow_client_phase(url)
        print(slow, flush=True)
    finally:
        proc.terminate()
        proc.wait(60)
    with args.table.open("a", encoding="utf-8") as f:
        f.write("\n".join(report(args, command, health, stall, overload, slow)) + "\n")
    print(f"appended to {args.table}")


if __name__ == "__main__":
    main()

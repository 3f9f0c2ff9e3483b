"""Load test of `rankwise serve` over loopback: latency, throughput and errors at several concurrencies.

    python benchmarks/load_test.py --model smollm2-135m --method pointwise.yes_no --engine transformers \
        --requests 200 --docs 20 --concurrency 1 8
    python benchmarks/load_test.py --bad-inputs     # the bad-input table instead

Starts `rankwise serve --no-cache` (or uses --url), then sends the same set of distinct requests (DL19 queries,
windows of their BM25 top-100 passages) at each concurrency, one phase after another on the same server.
With --bad-inputs it starts the server with an API key and sends the bad inputs the tests use
(tests/serve_cases.py), each followed by a good request. Each mode rewrites its own section of --table,
with the command, the CPU and the load average beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import re
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from rankwise.cli.common import cpu_name
from rankwise.data import load_dataset

HERE = Path(__file__).resolve().parent
TITLE = "# `rankwise serve`: load test and bad inputs"
_CLI = "from rankwise.cli import main; main()"  # `rankwise serve`


def request_bodies(dataset: str, n: int, docs: int) -> list[dict]:
    """n distinct requests: each query with a window of `docs` passages of its BM25 top-100."""
    requests = load_dataset(dataset).requests("bm25")
    bodies = []
    for start in range(0, 100, docs):
        for r in requests:
            window = r.candidates[start:start + docs]
            if len(window) == docs:
                bodies.append({"query": r.query.text, "documents": [c.content for c in window]})
    if len(bodies) < n:
        raise SystemExit(f"{dataset} gives only {len(bodies)} distinct requests of {docs} documents")
    return bodies[:n]


def start_server(args, api_key: str | None = None, extra: list[str] = ()) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-c", _CLI, "serve", "--model", args.model, "--method", args.method,
           "--engine", args.engine, "--port", "0", "--no-cache",
           "--batch-size", str(args.batch_size), "--batch-wait-ms", str(args.batch_wait_ms),
           "--max-batch-prompts", str(args.max_batch_prompts), *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if api_key:
        env["RANKWISE_API_KEY"] = api_key
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    for line in proc.stderr:
        sys.stderr.write(line)
        match = re.search(r"running on (http://\S+)", line, flags=re.I)
        if match:
            threading.Thread(target=_drain, args=(proc.stderr,), daemon=True).start()
            return proc, match.group(1)
    raise SystemExit("rankwise serve did not start")


def _drain(stream) -> None:
    for _ in stream:  # the server's log must keep flowing or it blocks
        pass


def run_phase(url: str, bodies: list[dict], concurrency: int, timeout: float) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    todo = iter(bodies)

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=timeout) as client:
            while True:
                with lock:
                    body = next(todo, None)
                if body is None:
                    return
                start = time.perf_counter()
                try:
                    response = client.post("/v1/rerank", json=body)
                    ok = response.status_code == 200 and len(response.json()["results"]) == len(body["documents"])
                    problem = None if ok else f"{response.status_code}: {response.text[:120]}"
                except httpx.HTTPError as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                with lock:
                    latencies.append(time.perf_counter() - start)
                    if problem:
                        errors.append(problem)

    load_before = os.getloadavg()
    batches_before = _batch_totals(url)
    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    batches = [a - b for a, b in zip(_batch_totals(url), batches_before)]
    latencies.sort()
    return {"concurrency": concurrency, "requests": len(latencies), "errors": len(errors),
            "error_samples": errors[:3], "wall": wall, "throughput": len(latencies) / wall,
            "docs_per_s": sum(len(b["documents"]) for b in bodies) / wall,
            "p50": _percentile(latencies, 50), "p95": _percentile(latencies, 95), "max": latencies[-1],
            "prompts_per_batch": batches[1] / max(batches[0], 1), "calls_per_batch": batches[3] / max(batches[2], 1),
            "load": (load_before[0], os.getloadavg()[0])}


def _batch_totals(url: str) -> list[float]:
    """(count, sum) of prompts per backend call and of request calls per backend call, from /metrics."""
    text = httpx.get(f"{url}/metrics").text
    out = []
    for name in ("rankwise_batch_prompts_count", "rankwise_batch_prompts_sum",
                 "rankwise_batch_calls_count", "rankwise_batch_calls_sum"):
        match = re.search(rf"^{name} (\S+)$", text, flags=re.M)
        out.append(float(match.group(1)) if match else 0.0)
    return out


def _percentile(sorted_values: list[float], q: float) -> float:
    k = (len(sorted_values) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def load_section(args, phases: list[dict], command: str, health: dict) -> list[str]:
    lines = [f"`{command}`", "", _setup(args, health) + f"; {args.docs} documents per request (DL19 BM25 "
             "windows), cache off, loopback.", "",
             "| concurrency | requests | errors | p50 latency (s) | p95 latency (s) | max (s) | throughput (req/s) "
             "| documents/s | prompts per backend call | requests per backend call | load average (before → after) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in phases:
        lines.append(f"| {p['concurrency']} | {p['requests']} | {p['errors']} | {p['p50']:.2f} | {p['p95']:.2f} | "
                     f"{p['max']:.2f} | {p['throughput']:.3f} | {p['docs_per_s']:.1f} | "
                     f"{p['prompts_per_batch']:.1f} | {p['calls_per_batch']:.2f} | "
                     f"{p['load'][0]:.2f} → {p['load'][1]:.2f} |")
    base = phases[0]
    for p in phases[1:]:
        lines += ["", f"Throughput ratio concurrency {p['concurrency']} / concurrency {base['concurrency']}: "
                      f"**{p['throughput'] / base['throughput']:.2f}**"]
    return lines


def bad_input_section(url: str, api_key: str, args, command: str, health: dict) -> list[str]:
    """Each bad input of tests/serve_cases.py (and a missing / wrong token), then a good request."""
    sys.path.insert(0, str(HERE.parent))
    from tests.serve_cases import GOOD, bad_inputs

    auth = {"Authorization": f"Bearer {api_key}"}
    cases = [(c.name, c.body, dict(c.headers), auth) for c in bad_inputs()]
    cases += [("no API key", json.dumps(GOOD).encode(), {"content-type": "application/json"}, {}),
              ("a wrong API key", json.dumps(GOOD).encode(), {"content-type": "application/json"},
               {"Authorization": "Bearer wrong"})]
    load_before = os.getloadavg()[0]
    lines = [f"`{command}`", "", _setup(args, health) + "; API key on; default limits (1,000 documents, "
             "20,000 characters per document, 2 MiB body).", "",
             "| bad input | status | field | message | good request right after |", "|---|---|---|---|---|"]
    with httpx.Client(base_url=url, timeout=args.timeout) as client:
        for name, body, headers, credentials in cases:
            response = client.post("/v1/rerank", content=body, headers={**headers, **credentials})
            error = response.json().get("error", {})
            good = client.post("/v1/rerank", json=GOOD, headers=auth)
            message = str(error.get("message", response.text))[:90].replace("|", "\\|")
            lines.append(f"| {name} | {response.status_code} | {error.get('field')} | {message} | "
                         f"{good.status_code} |")
    lines += ["", f"Load average {load_before:.2f} → {os.getloadavg()[0]:.2f}."]
    return lines


def _setup(args, health: dict) -> str:
    return (f"CPU: {cpu_name()} ({os.cpu_count()} cores, shared with other jobs); server: {health['method']} on "
            f"{health['model']}, engine={health['engine']} dtype={health['dtype']}, engine batch size "
            f"{args.batch_size}, batch wait {args.batch_wait_ms:g} ms, at most {args.max_batch_prompts} prompts "
            "per merged call")


def write_section(path: Path, heading: str, lines: list[str]) -> None:
    """Replace (or add) the section ``heading`` of the results file, keeping the others in order."""
    sections: dict[str, str] = {"## Load test": "", "## Bad inputs": ""}
    if path.exists():
        for block in path.read_text(encoding="utf-8").split("\n## ")[1:]:
            title, _, body = block.partition("\n")
            sections[f"## {title}"] = body.strip("\n")
    sections[heading] = "\n".join(lines)
    text = TITLE + "\n" + "".join(f"\n{h}\n\n{b}\n" for h, b in sections.items() if b)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--method", default="pointwise.yes_no")
    ap.add_argument("--engine", default="transformers")
    ap.add_argument("--dataset", default="dl19")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--docs", type=int, default=20)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--batch-wait-ms", type=float, default=5.0)
    ap.add_argument("--max-batch-prompts", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=600.0, help="client timeout per request (s)")
    ap.add_argument("--url", help="an already running server (default: start `rankwise serve`)")
    ap.add_argument("--bad-inputs", action="store_true", help="run the bad-input table instead")
    ap.add_argument("--table", type=Path, default=HERE / "results" / "serve.md")
    args = ap.parse_args()
    command = "python benchmarks/load_test.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])

    api_key = (os.environ.get("RANKWISE_API_KEY") or secrets.token_hex(16)) if args.bad_inputs else None
    proc = None
    url = args.url
    if url is None:
        proc, url = start_server(args, api_key)
    try:
        health = httpx.get(f"{url}/health").json()
        if args.bad_inputs:
            write_section(args.table, "## Bad inputs", bad_input_section(url, api_key, args, command, health))
            print(f"wrote {args.table}")
            return
        bodies = request_bodies(args.dataset, args.requests + args.warmup, args.docs)
        warmup, bodies = bodies[:args.warmup], bodies[args.warmup:]
        run_phase(url, warmup, 1, args.timeout)
        phases = []
        for c in args.concurrency:
            phase = run_phase(url, bodies, c, args.timeout)
            print(f"concurrency {c}: {phase['requests']} requests, {phase['errors']} errors "
                  f"{phase['error_samples']}, p50 {phase['p50']:.2f} s, p95 {phase['p95']:.2f} s, "
                  f"{phase['throughput']:.3f} req/s, {phase['prompts_per_batch']:.1f} prompts/backend call, "
                  f"load {phase['load'][0]:.2f} -> {phase['load'][1]:.2f}", flush=True)
            phases.append(phase)
        write_section(args.table, "## Load test", load_section(args, phases, command, health))
        print(f"wrote {args.table}")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(60)


if __name__ == "__main__":
    main()

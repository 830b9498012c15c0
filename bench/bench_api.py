"""The HTTP API under load: a real uvicorn on 127.0.0.1 over the 2,002-file demo collection
(exact index, the bundled demo model on ONNX Runtime).

1. 200 text queries, one after another, from a Python client: latency p50 and p99.
2. 8 concurrent clients for 30 s mixing text, image and similar queries: errors, QPS, and the
   server's RSS before and after (its growth).

    python bench/bench_api.py [--seconds 30] [--clients 8] [--queries 200]
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from common import write_result

TEXTS = (
    "красный круг",
    "a blue star",
    "зелёный треугольник",
    "a yellow square on grass",
    "синяя звезда",
    "an orange arrow",
    "белый крест",
    "a purple heart",
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def build_demo(data: Path) -> None:
    env = {**os.environ, "IMGFINDER_DATA_DIR": str(data)}
    subprocess.run([sys.executable, "-m", "imgfinder", "demo", "build"], env=env, check=True)


def start_server(data: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "IMGFINDER_DATA_DIR": str(data)}
    server = subprocess.Popen(
        [sys.executable, "-m", "imgfinder", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).raise_for_status()
            return server
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    raise TimeoutError("the API did not start")


def sequential(base: str, queries: int) -> dict[str, float]:
    with httpx.Client(base_url=base, timeout=30) as client:
        for text in TEXTS:  # warm: the first encode of each text, the loaded index
            client.get("/collections/demo/search", params={"q": text, "k": 24})
        times = []
        for number in range(queries):
            text = f"{TEXTS[number % len(TEXTS)]} {number}"  # a new text each time: no cache
            started = time.perf_counter()
            answer = client.get("/collections/demo/search", params={"q": text, "k": 24})
            times.append((time.perf_counter() - started) * 1000)
            answer.raise_for_status()
    return {
        "queries": queries,
        "p50_ms": round(float(np.percentile(times, 50)), 2),
        "p99_ms": round(float(np.percentile(times, 99)), 2),
        "mean_ms": round(float(np.mean(times)), 2),
    }


def mixed_load(base: str, clients: int, seconds: float, image: bytes) -> dict[str, float]:
    with httpx.Client(base_url=base, timeout=30) as client:
        found = client.get("/collections/demo/search", params={"q": "a red circle", "k": 50})
        items = [hit["item_id"] for hit in found.json()["hits"]]
    counts = {"text": 0, "image": 0, "similar": 0, "errors": 0}
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=base, timeout=30) as client:
            while time.monotonic() < stop:
                kind = rng.choice(("text", "text", "image", "similar"))
                if kind == "text":
                    params = {"q": f"{rng.choice(TEXTS)} {rng.randint(0, 10**6)}", "k": 24}
                    answer = client.get("/collections/demo/search", params=params)
                elif kind == "image":
                    files = {"file": ("q.jpg", image, "image/jpeg")}
                    answer = client.post("/collections/demo/search/image", files=files)
                else:
                    path = f"/collections/demo/items/{rng.choice(items)}/similar"
                    answer = client.get(path, params={"k": 24})
                with lock:
                    counts[kind] += 1
                    counts["errors"] += answer.status_code != 200

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    total = counts["text"] + counts["image"] + counts["similar"]
    return {**counts, "clients": clients, "seconds": round(wall, 1), "qps": round(total / wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch) / "data"
        build_demo(data)
        image = next((data / "indexes" / "demo_media" / "images").rglob("*.jpg")).read_bytes()
        port = free_port()
        server = start_server(data, port)
        try:
            base = f"http://127.0.0.1:{port}"
            latency = sequential(base, args.queries)
            before = rss_mb(server.pid)
            load = mixed_load(base, args.clients, args.seconds, image)
            after = rss_mb(server.pid)
        finally:
            server.terminate()
            server.wait(10)
    memory = {
        "rss_before_mb": round(before, 1),
        "rss_after_mb": round(after, 1),
        "growth_pct": round(100 * (after - before) / before, 1),
    }
    table = "\n".join(
        [
            "## HTTP API (real uvicorn on 127.0.0.1, 2,002-file demo collection, exact index)",
            "",
            "| measure | value | target |",
            "|---|--:|---|",
            f"| text query p50, {latency['queries']} queries | {latency['p50_ms']} ms | ≤ 15 ms |",
            f"| text query p99 | {latency['p99_ms']} ms | ≤ 50 ms |",
            f"| {load['clients']} clients × {load['seconds']} s, text/image/similar: errors "
            f"| {load['errors']} | 0 |",
            f"| queries per second under that load | {load['qps']} | reported |",
            f"| server RSS growth under load ({memory['rss_before_mb']} → "
            f"{memory['rss_after_mb']} MB) | {memory['growth_pct']} % | ≤ 10 % |",
        ]
    )
    write_result("api", {"latency": latency, "load": load, "memory": memory}, table)
    print(table)


if __name__ == "__main__":
    main()

"""`make bench`: what the gateway adds to an upstream call, on the local stack.

The same non-stream chat request is sent N times (a) straight to the demo
upstream and (b) through the gateway (chalice's local server, the AWS
emulator provisioned from infra/template.yaml), sequentially and from 16
concurrent clients. It prints p50/p99 latency of both, the overhead, the AWS
calls per relay request (counted with botocore's event hooks) and the import
time of the app.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import httpx

from chalicelib import deps
from chalicelib.config import Settings
from devstack.demo_upstream import DemoUpstream
from devstack.emulator import Emulator, provision
from devstack.local_server import LocalGateway

ROOT = Path(__file__).resolve().parents[1]
ADMIN = "bench-admin-token"
BODY = {"model": "bench-chat", "messages": [{"role": "user", "content": "Say hello to the benchmark."}],
        "max_tokens": 64}


class AwsMeter:
    """Counts AWS calls and the time spent in them, with botocore's event hooks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started = threading.local()
        self.calls: Counter[str] = Counter()
        self.seconds = 0.0

    def attach(self, session: boto3.session.Session) -> None:
        session.events.register("before-call", self._before)
        session.events.register("after-call", self._after)

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.seconds = 0.0

    def _before(self, event_name: str, **_: object) -> None:
        self._started.at = time.perf_counter()

    def _after(self, event_name: str, **_: object) -> None:
        elapsed = time.perf_counter() - self._started.at
        with self._lock:
            self.calls[".".join(event_name.split(".")[1:])] += 1  # service.Operation
            self.seconds += elapsed


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(send: Callable[[], None], n: int, concurrency: int) -> tuple[list[float], float]:
    """Latencies (ms) of n calls spread over `concurrency` clients, and the wall time (s)."""
    def timed(_: int) -> float:
        start = time.perf_counter()
        send()
        return (time.perf_counter() - start) * 1000

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        latencies = list(pool.map(timed, range(n)))
    return latencies, time.perf_counter() - start


def import_time_ms(repeats: int = 5) -> float:
    """Median wall time of `python -c "import app"` in a fresh interpreter, minus a bare interpreter."""
    def once(code: str) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
        return (time.perf_counter() - start) * 1000

    app = statistics.median(once("import app") for _ in range(repeats))
    bare = statistics.median(once("pass") for _ in range(repeats))
    return app - bare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=300, help="requests per run (default 300)")
    args = parser.parse_args()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "bench")

    emulator = Emulator(port=0)
    emulator.start()
    provision(emulator.client, ROOT / "infra" / "template.yaml", "bench")
    upstream = DemoUpstream()
    upstream.start()

    aws = AwsMeter()
    session = boto3.session.Session()
    aws.attach(session)
    settings = Settings(resource_prefix="bench", aws_endpoint_url=emulator.endpoint_url, aws_region="us-east-1",
                        admin_token=ADMIN)
    deps.use_gateway(deps.build_gateway(settings, session=session))
    from app import app

    server = LocalGateway(app, stage="bench").start()
    url = server.url

    admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30)
    admin.post("/admin/channels", json={"name": "demo", "base_url": upstream.base_url, "api_key": "demo"})
    admin.post("/admin/models", json={"name": "bench-chat", "channel": "demo", "input_per_1m": "0.28",
                                      "output_per_1m": "0.42"})
    account = admin.post("/admin/accounts", json={"email": "bench@example.com"}).json()["account_id"]
    admin.post(f"/admin/accounts/{account}/credit", json={"amount_usd": "1000"})
    key = admin.post(f"/admin/accounts/{account}/keys", json={"name": "bench"}).json()["key"]

    http = httpx.Client(timeout=30, limits=httpx.Limits(max_connections=64))
    direct = lambda: http.post(upstream.base_url + "/chat/completions", json=BODY,  # noqa: E731
                               headers={"Authorization": "Bearer demo"}).raise_for_status()
    gateway = lambda: http.post(url + "/v1/chat/completions", json=BODY,  # noqa: E731
                                headers={"Authorization": f"Bearer {key}"}).raise_for_status()

    for send in (direct, gateway):  # warm up connections, caches and the key lookup
        run(send, 20, 1)

    print(f"Tokenway benchmark: {args.n} non-stream chat requests per run, local stack\n")
    print(f"{'run':<28}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>9}")
    for concurrency in (1, 16):
        results = {}
        for name, send in (("direct", direct), ("gateway", gateway)):
            aws.reset()
            latencies, wall = run(send, args.n, concurrency)
            results[name] = latencies
            label = f"{name}, {'sequential' if concurrency == 1 else f'{concurrency} clients'}"
            print(f"{label:<28}{percentile(latencies, 0.5):>9.2f}{percentile(latencies, 0.99):>9.2f}"
                  f"{args.n / wall:>9.0f}")
        overhead = [percentile(results["gateway"], q) - percentile(results["direct"], q) for q in (0.5, 0.99)]
        print(f"{'  overhead':<28}{overhead[0]:>9.2f}{overhead[1]:>9.2f}")
        print(f"  AWS calls per relay request: {sum(aws.calls.values()) / args.n:.2f} ("
              + ", ".join(f"{op} {n / args.n:.2f}" for op, n in sorted(aws.calls.items())) + ")")
        in_aws = aws.seconds * 1000 / args.n
        own = statistics.mean(results["gateway"]) - statistics.mean(results["direct"]) - in_aws
        print(f"  mean time in AWS calls (the emulator): {in_aws:.2f} ms; the gateway's own mean overhead: "
              f"{own:.2f} ms")
    print(f"\nimport app: {import_time_ms():.0f} ms (median of 5, above a bare interpreter)")

    server.stop()
    upstream.stop()
    emulator.stop()


if __name__ == "__main__":
    main()

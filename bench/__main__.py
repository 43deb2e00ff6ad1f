"""`make bench`: what the gateway adds to an upstream call, on the local stack.

The same non-stream chat request is sent N times (a) straight to the demo upstream and (b) through
the gateway, sequentially and from 16 concurrent clients, on the AWS emulator provisioned from
infra/template.yaml, through each of two servers (each on tables of its own):

- chalice's local server, in this process (devstack.local_server: what `make run` served with
  before), where the AWS calls per relay request are counted with botocore's event hooks;
- the one-machine server (`python -m chalicelib.api.server`: gunicorn, TOKENWAY_SERVER_WORKERS
  processes), what `make run` serves with now, in processes of its own.

It prints p50/p99 latency and requests per second of each run and the overhead over the direct
call; the same for an unknown path (the app's own 404, no storage call: the server's and the app's
dispatch alone); the time to a stream's first event through the one-machine server against the upstream's
own, and the import time of the app. `--servers` picks the servers to measure.
"""

from __future__ import annotations

import argparse
import os
import socket
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
SERVERS = ("chalice-local", "server")
STREAMS = 50


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


def seed(url: str, upstream: DemoUpstream) -> str:
    """A channel to the demo upstream, a priced model and a well-funded account: its key."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30) as admin:
        admin.post("/admin/channels", json={"name": "demo", "base_url": upstream.base_url, "api_key": "demo"})
        admin.post("/admin/models", json={"name": "bench-chat", "channel": "demo", "input_per_1m": "0.28",
                                          "output_per_1m": "0.42"})
        account = admin.post("/admin/accounts", json={"email": "bench@example.com"}).json()["account_id"]
        admin.post(f"/admin/accounts/{account}/credit", json={"amount_usd": "1000"})
        return admin.post(f"/admin/accounts/{account}/keys", json={"name": "bench"}).json()["key"]


def measure(http: httpx.Client, upstream: DemoUpstream, url: str, key: str, n: int,
            aws: AwsMeter | None) -> None:
    """The direct and gateway runs, sequential and with 16 clients, printed."""
    direct = lambda: http.post(upstream.base_url + "/chat/completions", json=BODY,  # noqa: E731
                               headers={"Authorization": "Bearer demo"}).raise_for_status()
    gateway = lambda: http.post(url + "/v1/chat/completions", json=BODY,  # noqa: E731
                                headers={"Authorization": f"Bearer {key}"}).raise_for_status()
    for send in (direct, gateway):  # warm up connections, caches and the key lookup
        run(send, 20, 1)
        run(send, 32, 16)
    print(f"{'run':<28}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>9}")
    for concurrency in (1, 16):
        results = {}
        for name, send in (("direct", direct), ("gateway", gateway)):
            if aws is not None:
                aws.reset()
            latencies, wall = run(send, n, concurrency)
            results[name] = latencies
            label = f"{name}, {'sequential' if concurrency == 1 else f'{concurrency} clients'}"
            print(f"{label:<28}{percentile(latencies, 0.5):>9.2f}{percentile(latencies, 0.99):>9.2f}"
                  f"{n / wall:>9.0f}")
        overhead = [percentile(results["gateway"], q) - percentile(results["direct"], q) for q in (0.5, 0.99)]
        print(f"{'  overhead':<28}{overhead[0]:>9.2f}{overhead[1]:>9.2f}")
        if aws is None:
            continue
        print(f"  AWS calls per relay request: {sum(aws.calls.values()) / n:.2f} ("
              + ", ".join(f"{op} {count / n:.2f}" for op, count in sorted(aws.calls.items())) + ")")
        in_aws = aws.seconds * 1000 / n
        own = statistics.mean(results["gateway"]) - statistics.mean(results["direct"]) - in_aws
        print(f"  mean time in AWS calls (the emulator): {in_aws:.2f} ms; the gateway's own mean overhead: "
              f"{own:.2f} ms")
    # An answer that needs no storage (the app's own 404): the server's and the app's dispatch alone.
    unknown = lambda: http.get(url + "/v1/no-such-route").status_code == 404 or sys.exit("not a 404")  # noqa: E731
    for concurrency in (1, 16):
        latencies, wall = run(unknown, n, concurrency)
        label = f"404, {'sequential' if concurrency == 1 else f'{concurrency} clients'}"
        print(f"{label:<28}{percentile(latencies, 0.5):>9.2f}{percentile(latencies, 0.99):>9.2f}{n / wall:>9.0f}")


def first_event_ms(http: httpx.Client, url: str, key: str) -> float:
    """Milliseconds from sending a streamed chat to reading its first event."""
    start = time.perf_counter()
    with http.stream("POST", url, json={**BODY, "stream": True}, headers={"Authorization": f"Bearer {key}"}) as answer:
        lines = answer.iter_lines()
        next(line for line in lines if line.startswith("data: "))
        elapsed = (time.perf_counter() - start) * 1000
        for _ in lines:
            pass
    return elapsed


def chalice_local(emulator: Emulator, upstream: DemoUpstream, http: httpx.Client, n: int) -> None:
    """Chalice's local server in this process, its AWS calls counted."""
    provision(emulator.client, ROOT / "infra" / "template.yaml", "bench")
    aws = AwsMeter()
    session = boto3.session.Session()
    aws.attach(session)
    settings = Settings(resource_prefix="bench", aws_endpoint_url=emulator.endpoint_url, aws_region="us-east-1",
                        admin_token=ADMIN)
    deps.use_gateway(deps.build_gateway(settings, session=session))
    from app import app

    server = LocalGateway(app, stage="bench").start()
    try:
        print("\n== chalice's local server (devstack.local_server), in this process ==")
        measure(http, upstream, server.url, seed(server.url, upstream), n, aws)
    finally:
        server.stop()
        deps.use_gateway(None)


def one_machine_server(emulator: Emulator, upstream: DemoUpstream, http: httpx.Client, n: int) -> None:
    """The one-machine server `make run` starts, in processes of its own."""
    provision(emulator.client, ROOT / "infra" / "template.yaml", "bench-server")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "TOKENWAY_RESOURCE_PREFIX": "bench-server", "TOKENWAY_ADMIN_TOKEN": ADMIN,
           "TOKENWAY_AWS_ENDPOINT_URL": emulator.endpoint_url, "TOKENWAY_AWS_REGION": "us-east-1"}
    server = subprocess.Popen([sys.executable, "-m", "chalicelib.api.server", "--port", str(port)], cwd=ROOT,
                              env=env, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url + "/v1/models", timeout=1)
                break
            except httpx.HTTPError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the one-machine server did not start") from None
                time.sleep(0.1)
        settings = Settings()  # the server's, from the same environment
        print(f"\n== the one-machine server (chalicelib.api.server: gunicorn, {settings.server_workers} workers of "
              f"{settings.server_threads} threads), in processes of its own; AWS calls not counted there ==")
        key = seed(url, upstream)
        measure(http, upstream, url, key, n, None)
        direct = [first_event_ms(http, upstream.base_url + "/chat/completions", "demo") for _ in range(STREAMS)]
        relayed = [first_event_ms(http, url + "/v1/chat/completions", key) for _ in range(STREAMS)]
        print(f"  stream, first event (p50 of {STREAMS}): direct {percentile(direct, 0.5):.2f} ms, through the "
              f"server {percentile(relayed, 0.5):.2f} ms")
    finally:
        server.terminate()
        server.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=300, help="requests per run (default 300)")
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS),
                        help="the servers to measure (default both)")
    args = parser.parse_args()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "bench")

    emulator = Emulator(port=0)
    emulator.start()
    upstream = DemoUpstream()
    upstream.start()
    http = httpx.Client(timeout=30, limits=httpx.Limits(max_connections=64))
    print(f"Tokenway benchmark: {args.n} non-stream chat requests per run, local stack (AWS emulator)")
    try:
        if "chalice-local" in args.servers:
            chalice_local(emulator, upstream, http, args.n)
        if "server" in args.servers:
            one_machine_server(emulator, upstream, http, args.n)
        print(f"\nimport app: {import_time_ms():.0f} ms (median of 5, above a bare interpreter)")
    finally:
        http.close()
        upstream.stop()
        emulator.stop()


if __name__ == "__main__":
    main()

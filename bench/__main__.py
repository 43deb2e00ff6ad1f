"""`make bench`: what the gateway adds to an upstream call, on the local stack.

The same non-stream chat request is sent N times (a) straight to the demo upstream and (b) through
the gateway, sequentially and from 16 concurrent clients, on the AWS emulator provisioned from
infra/template.yaml, through each of two servers (each on tables of its own):

- chalice's local server, in this process (devstack.local_server: what `make run` served with
  before), where the AWS calls per relay request are counted with botocore's event hooks;
- the one-machine server (`python -m chalicelib.api.server`: gunicorn, TOKENWAY_SERVER_WORKERS
  processes), in processes of its own;

and one-machine mode as `make run` serves it: the one-machine server on SQLite in a temporary data
directory, with a flatness run (`--flat` requests from 16 clients, the first and last tenth compared)
and the SQLite transactions per relay request (sqlite3's trace callback, in this process).

It prints p50/p99 latency and requests per second of each run, the overhead over the direct call
and the server's CPU time per request; the same for an unknown path (the app's own 404, no storage
call: the server's and the app's dispatch alone); the time to a stream's first event through the
one-machine server against the upstream's own, and the import time of the app beside a bare
`import boto3`. Then the usage reports over a month of made-up usage (bench/usage.py: `--usage-events`
of one account, 1,000,000 by default), and what one relay request writes on DynamoDB and Firehose in the
units AWS bills (bench/aws_units.py). `--servers` picks what to measure (`usage`: the reports; `units`:
the billed units).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import httpx

from bench import aws_units, usage
from chalicelib import deps
from chalicelib.config import Settings
from devstack.demo_upstream import DemoUpstream
from devstack.emulator import Emulator, provision
from devstack.local_server import LocalGateway

ROOT = Path(__file__).resolve().parents[1]
ADMIN = "bench-admin-token"
BODY = {"model": "bench-chat", "messages": [{"role": "user", "content": "Say hello to the benchmark."}],
        "max_tokens": 64}
SERVERS = ("chalice-local", "server", "sqlite", "usage", "units")
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


def import_time_ms(repeats: int = 5) -> tuple[float, float]:
    """Median wall times of `import app` and of `import boto3` in a fresh interpreter, minus a bare one."""
    def once(code: str) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
        return (time.perf_counter() - start) * 1000

    app = statistics.median(once("import app") for _ in range(repeats))
    boto = statistics.median(once("import boto3") for _ in range(repeats))
    bare = statistics.median(once("pass") for _ in range(repeats))
    return app - bare, boto - bare


def seed(url: str, upstream: DemoUpstream) -> str:
    """A channel to the demo upstream, a priced model and a well-funded account: its key."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30) as admin:
        admin.post("/admin/channels", json={"name": "demo", "base_url": upstream.base_url, "api_key": "demo"})
        admin.post("/admin/models", json={"name": "bench-chat", "channel": "demo", "input_per_1m": "0.28",
                                          "output_per_1m": "0.42"})
        account = admin.post("/admin/accounts", json={"email": "bench@example.com"}).json()["account_id"]
        admin.post(f"/admin/accounts/{account}/credit", json={"amount_usd": "1000"})
        return admin.post(f"/admin/accounts/{account}/keys", json={"name": "bench"}).json()["key"]


# Limits far above what the bench sends: every request is counted, none refused.
BENCH_LIMITS = {"rpm": 1_000_000_000, "tpm": 1_000_000_000, "concurrency": 100_000}


def limited_key(url: str) -> str:
    """A key of the bench account on a plan with request limits (requests and tokens per minute, in flight)."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30) as admin:
        admin.post("/admin/groups", json={"name": "bench-limited"})
        admin.put("/admin/groups/bench-limited/limits", json=BENCH_LIMITS).raise_for_status()
        account = admin.get("/admin/accounts?search=bench@example.com").json()["data"][0]["account_id"]
        admin.patch(f"/admin/accounts/{account}", json={"groups": ["bench-limited"]}).raise_for_status()
        key = admin.post(f"/admin/accounts/{account}/keys", json={"name": "bench-limited",
                                                                 "group": "bench-limited"}).json()["key"]
    # Every process of a server sees the new plan once its catalog cache (5 s) is read again.
    time.sleep(Settings().catalog_cache_ttl_s + 1)
    return key


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process and its children (the server's workers), from /proc."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    total = 0
    for process in (pid, *map(int, children)):
        fields = Path(f"/proc/{process}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def measure(http: httpx.Client, upstream: DemoUpstream, url: str, key: str, n: int,
            aws: AwsMeter | None, server_pid: int | None = None) -> None:
    """The direct and gateway runs, sequential and with 16 clients, printed (with the server's CPU time
    per request when it runs in processes of its own)."""
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
            cpu = cpu_seconds(server_pid) if server_pid is not None and name == "gateway" else None
            latencies, wall = run(send, n, concurrency)
            results[name] = latencies
            label = f"{name}, {'sequential' if concurrency == 1 else f'{concurrency} clients'}"
            print(f"{label:<28}{percentile(latencies, 0.5):>9.2f}{percentile(latencies, 0.99):>9.2f}"
                  f"{n / wall:>9.0f}"
                  + (f"   server CPU {(cpu_seconds(server_pid) - cpu) * 1000 / n:.2f} ms/request"
                     if cpu is not None and server_pid is not None else ""))
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


def flatness(http: httpx.Client, url: str, key: str, n: int, concurrency: int = 16) -> None:
    """n requests from `concurrency` clients: the first and the last tenth, by order sent, compared."""
    send = lambda: http.post(url + "/v1/chat/completions", json=BODY,  # noqa: E731
                             headers={"Authorization": f"Bearer {key}"}).raise_for_status()
    latencies, wall = run(send, n, concurrency)
    tenth = max(1, n // 10)
    head, tail = latencies[:tenth], latencies[-tenth:]
    print(f"  flat over {n} requests ({concurrency} clients, {n / wall:.0f} req/s): first {tenth} p50/p99 "
          f"{percentile(head, 0.5):.2f}/{percentile(head, 0.99):.2f} ms, last {tenth} "
          f"{percentile(tail, 0.5):.2f}/{percentile(tail, 0.99):.2f} ms")


def storage_round_trips(upstream: DemoUpstream, data_dir: Path, n: int = 200) -> None:
    """SQLite transactions (and statements) per relay request, counted with sqlite3's trace callback on
    a gateway built in this process over its own database, served through the WSGI adapter without
    a socket (what a request runs is the same; only the HTTP parsing is left out)."""
    import io

    from chalicelib.api.wsgi import ChaliceWsgi

    statements: Counter[str] = Counter()
    lock = threading.Lock()

    def trace(sql: str) -> None:
        word = sql.lstrip().split(None, 2)
        kind = " ".join(word[:2]) if word and word[0].upper() == "BEGIN" else (word[0].upper() if word else "")
        with lock:
            statements[kind] += 1

    settings = Settings(storage="sqlite", data_dir=data_dir, admin_token=ADMIN)
    gateway = deps.build_gateway(settings)
    deps.use_gateway(gateway)
    from app import app

    wsgi = ChaliceWsgi(app, streams=True, max_body_bytes=settings.max_body_bytes)

    def call(method: str, path: str, body: dict | None, token: str) -> tuple[int, bytes]:
        raw = json.dumps(body).encode() if body is not None else b""
        environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "RAW_URI": path, "QUERY_STRING": "",
                   "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(raw)),
                   "HTTP_AUTHORIZATION": f"Bearer {token}", "REMOTE_ADDR": "127.0.0.1",
                   "wsgi.input": io.BytesIO(raw)}
        answer: list[int] = []
        body_parts = wsgi(environ, lambda status, headers, *_: answer.append(int(status.split()[0])))
        content = b"".join(body_parts)
        getattr(body_parts, "close", lambda: None)()
        return answer[0], content

    try:
        call("POST", "/admin/channels", {"name": "demo", "base_url": upstream.base_url, "api_key": "demo"}, ADMIN)
        call("POST", "/admin/models", {"name": "bench-chat", "channel": "demo", "input_per_1m": "0.28",
                                       "output_per_1m": "0.42"}, ADMIN)
        account = json.loads(call("POST", "/admin/accounts", {"email": "bench@example.com"}, ADMIN)[1])["account_id"]
        call("POST", f"/admin/accounts/{account}/credit", {"amount_usd": "1000"}, ADMIN)
        key = json.loads(call("POST", f"/admin/accounts/{account}/keys", {"name": "bench"}, ADMIN)[1])["key"]
        for _ in range(5):  # warm: the key and the catalog cached
            call("POST", "/v1/chat/completions", BODY, key)
        import sqlite3
        connect = sqlite3.connect

        def traced(*args: object, **kwargs: object) -> sqlite3.Connection:
            connection = connect(*args, **kwargs)
            connection.set_trace_callback(trace)
            return connection

        sqlite3.connect = traced
        try:
            _fresh_connections(gateway)
            for _ in range(n):
                status, _ = call("POST", "/v1/chat/completions", BODY, key)
                assert status == 200, status
        finally:
            sqlite3.connect = connect
        per = {kind: count / n for kind, count in sorted(statements.items())}
        transactions = sum(count for kind, count in per.items() if kind.startswith("BEGIN"))
        print(f"  SQLite per relay request (of {n}, key and catalog cached): {transactions:.2f} transactions ("
              + ", ".join(f"{kind} {count:.2f}" for kind, count in per.items()) + ")")
    finally:
        deps.use_gateway(None)


def _fresh_connections(gateway: object) -> None:
    """Close this thread's connection to each database the gateway holds, so that the next is traced."""
    from chalicelib.storage.sqlite.database import Database

    seen: set[int] = set()
    stack = [gateway]
    while stack:
        item = stack.pop()
        if id(item) in seen or not hasattr(item, "__dict__"):
            continue
        seen.add(id(item))
        if isinstance(item, Database):
            item.close()
            continue
        stack.extend(value for value in vars(item).values() if hasattr(value, "__dict__"))


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
        print("-- the same, with a key on a plan with request limits (RPM, TPM and in flight counted) --")
        measure(http, upstream, server.url, limited_key(server.url), n, aws)
    finally:
        server.stop()
        deps.use_gateway(None)


def start_server(env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """The one-machine server in processes of its own, with `env` added to ours: it and its URL once it answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "chalicelib.api.server", "--port", str(port)], cwd=ROOT,
                              env={**os.environ, **env}, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(url + "/v1/models", timeout=1)
            return server, url
        except httpx.HTTPError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise SystemExit("the one-machine server did not start") from None
            time.sleep(0.1)


def streams(http: httpx.Client, upstream: DemoUpstream, url: str, key: str) -> None:
    """A stream's first event at the client, straight from the upstream and through the gateway."""
    direct = [first_event_ms(http, upstream.base_url + "/chat/completions", "demo") for _ in range(STREAMS)]
    relayed = [first_event_ms(http, url + "/v1/chat/completions", key) for _ in range(STREAMS)]
    print(f"  stream, first event (p50 of {STREAMS}): direct {percentile(direct, 0.5):.2f} ms, through the "
          f"server {percentile(relayed, 0.5):.2f} ms (+{percentile(relayed, 0.5) - percentile(direct, 0.5):.2f} ms)")


def one_machine_server(emulator: Emulator, upstream: DemoUpstream, http: httpx.Client, n: int) -> None:
    """The one-machine server on the AWS emulator, in processes of its own."""
    provision(emulator.client, ROOT / "infra" / "template.yaml", "bench-server")
    server, url = start_server({"TOKENWAY_STORAGE": "dynamodb", "TOKENWAY_RESOURCE_PREFIX": "bench-server",
                                "TOKENWAY_ADMIN_TOKEN": ADMIN, "TOKENWAY_AWS_ENDPOINT_URL": emulator.endpoint_url,
                                "TOKENWAY_AWS_REGION": "us-east-1"})
    try:
        settings = Settings()  # the server's, from the same environment
        print(f"\n== the one-machine server (chalicelib.api.server: gunicorn, {settings.server_workers} workers of "
              f"{settings.server_threads} threads) on the AWS emulator, in processes of its own; AWS calls not "
              "counted there ==")
        key = seed(url, upstream)
        measure(http, upstream, url, key, n, None, server.pid)
        streams(http, upstream, url, key)
    finally:
        server.terminate()
        server.wait(timeout=60)


def one_machine_sqlite(upstream: DemoUpstream, http: httpx.Client, n: int, flat_n: int) -> None:
    """One-machine mode as `make run` serves it: the server on SQLite in a temporary data directory."""
    with tempfile.TemporaryDirectory(prefix="tokenway-bench-") as data_dir:
        server, url = start_server({"TOKENWAY_STORAGE": "sqlite", "TOKENWAY_DATA_DIR": str(Path(data_dir) / "server"),
                                    "TOKENWAY_ADMIN_TOKEN": ADMIN})
        try:
            settings = Settings()
            print(f"\n== ONE-MACHINE MODE: the one-machine server on SQLite (gunicorn, {settings.server_workers} "
                  f"workers of {settings.server_threads} threads; a temporary data directory; billing on) ==")
            key = seed(url, upstream)
            measure(http, upstream, url, key, n, None, server.pid)
            print("-- the same, with a key on a plan with request limits (RPM, TPM and in flight counted) --")
            measure(http, upstream, url, limited_key(url), n, None, server.pid)
            flatness(http, url, key, flat_n)
            streams(http, upstream, url, key)
        finally:
            server.terminate()
            server.wait(timeout=60)
        storage_round_trips(upstream, Path(data_dir) / "counted")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=300, help="requests per run (default 300)")
    parser.add_argument("--flat", type=int, default=2000,
                        help="requests of the one-machine flatness run, first and last tenth compared (default 2000)")
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS),
                        help="the servers to measure (default all: chalice's local server and the one-machine "
                             "server on the AWS emulator, the one-machine server on SQLite; usage: the usage "
                             "reports over a month of usage; units: what one relay request writes on DynamoDB "
                             "and Firehose, in billed units)")
    parser.add_argument("--usage-events", type=int, default=1_000_000,
                        help="the main account's usage events over 30 days, for the usage reports (default 1,000,000)")
    args = parser.parse_args()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "bench")

    emulator = Emulator(port=0)
    if {"chalice-local", "server"} & set(args.servers):
        emulator.start()
    upstream = DemoUpstream()
    upstream.start()
    http = httpx.Client(timeout=30, limits=httpx.Limits(max_connections=64))
    print(f"Tokenway benchmark: {args.n} non-stream chat requests per run, the demo upstream on loopback")
    try:
        if "chalice-local" in args.servers:
            chalice_local(emulator, upstream, http, args.n)
        if "server" in args.servers:
            one_machine_server(emulator, upstream, http, args.n)
        if "sqlite" in args.servers:
            one_machine_sqlite(upstream, http, args.n, args.flat)
        app_ms, boto3_ms = import_time_ms()
        print(f"\nimport app: {app_ms:.0f} ms; import boto3: {boto3_ms:.0f} ms ({app_ms / boto3_ms:.2f}x; "
              "medians of 5, above a bare interpreter)")
        if "usage" in args.servers:
            usage.run(args.usage_events)
        if "units" in args.servers:
            aws_units.main()
    finally:
        http.close()
        upstream.stop()
        emulator.stop()


if __name__ == "__main__":
    main()

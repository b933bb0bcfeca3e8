"""Benchmark of `GET /api/v1/vms/` against a bare DRF ListAPIView over the same table.

    .venv/bin/python bench/api_list.py        (or: make bench)

Self-contained: makes a temporary data directory, migrates and seeds it (SQLite, 10,000 VMs), makes an
API token for `admin`, starts gunicorn on a free loopback port with `bench.bench_settings` (the console's
URLs plus `/bench/bare/vms/`), drives both endpoints with 16 keep-alive clients, prints p50/p99 and their
ratio, counts SQL queries per page in-process, and removes everything it started and wrote.

Target (from the issue): p99 at most 100 ms and at most 2x the bare view. A miss is reported, not an
error: the script exits 0 unless the benchmark itself could not run."""

import argparse
import contextlib
import http.client
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
HOST = "127.0.0.1"
REAL = "/api/v1/vms/"
BARE = "/bench/bare/vms/"
PAGE = "/vms/"  # the console's VM list page, the same table rendered as HTML
PAGE_SIZE = 100
P99_LIMIT_MS = 100.0
RATIO_LIMIT = 2.0

# Search, filter and ordering combinations. Demo names are ROLE-NNNNN (roles web, app, db, cache, build,
# k8s-node, mail, vpn), hosts host-1..3, power states on/off/paused. The bare view ignores all of these
# except `page`.
QUERIES = [
    "search=web&power_state=on&ordering=-memory_bytes",
    "host=host-2&ordering=name",
    "power_state=off&guest_os=linux&ordering=-created_at",
    "search=00&ordering=host__name&page=2",
    "is_template=false&ordering=-vcpus,name",
    "",
]


@dataclass
class Samples:
    latencies: list[float] = field(default_factory=list)  # seconds
    by_query: dict[str, list[float]] = field(default_factory=dict)
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)  # "HTTP 404 /path" or the exception, counted
    elapsed: float = 0.0
    bytes: int = 0
    server_cpu: float = 0.0  # seconds of CPU the gunicorn processes used meanwhile


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU time of the live processes of a process group (Linux /proc; NaN elsewhere)."""
    ticks = 0
    try:
        pids = [entry for entry in os.listdir("/proc") if entry.isdigit()]
    except OSError:
        return float("nan")
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid:  # after the name: state, ppid, pgrp, ...; utime and stime at 11 and 12
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def run(args: list[str], env: dict) -> str:
    result = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args[1:])} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return result.stdout


def url(endpoint: str, query: str) -> str:
    return f"{endpoint}?page_size={PAGE_SIZE}" + (f"&{query}" if query else "")


class Client(threading.Thread):
    """One keep-alive connection sending `count` requests (or until `deadline`), cycling through QUERIES."""

    def __init__(self, port: int, headers: dict, endpoint: str, count: int, offset: int, deadline: float,
                 start: threading.Barrier) -> None:
        super().__init__(daemon=True)
        self.port, self.endpoint, self.count, self.offset = port, endpoint, count, offset
        self.deadline, self.start_barrier = deadline, start
        self.headers = headers
        self.samples = Samples()

    def error(self, kind: str) -> None:
        self.samples.errors += 1
        self.samples.error_kinds[kind] = self.samples.error_kinds.get(kind, 0) + 1

    def run(self) -> None:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=60)
        with contextlib.suppress(threading.BrokenBarrierError):
            self.start_barrier.wait()
        try:
            for i in range(self.count):
                if time.monotonic() > self.deadline:
                    break
                query = QUERIES[(self.offset + i) % len(QUERIES)]
                began = time.perf_counter()
                try:
                    conn.request("GET", url(self.endpoint, query), headers=self.headers)
                    response = conn.getresponse()
                    body = response.read()
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()
                    conn = http.client.HTTPConnection(HOST, self.port, timeout=60)
                    self.error(type(exc).__name__)
                    continue
                took = time.perf_counter() - began
                if response.status != 200:
                    self.error(f"HTTP {response.status} {url(self.endpoint, query)}")
                    continue
                self.samples.latencies.append(took)
                self.samples.by_query.setdefault(query, []).append(took)
                self.samples.bytes += len(body)
        finally:
            conn.close()


def load(port: int, headers: dict, endpoint: str, clients: int, per_client: int, time_limit: float,
         server_pgid: int) -> Samples:
    barrier = threading.Barrier(clients + 1)
    deadline = time.monotonic() + time_limit
    threads = [Client(port, headers, endpoint, per_client, n, deadline, barrier) for n in range(clients)]
    for thread in threads:
        thread.start()
    cpu_before = group_cpu_seconds(server_pgid)
    barrier.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    total = Samples(elapsed=time.perf_counter() - began, server_cpu=group_cpu_seconds(server_pgid) - cpu_before)
    for thread in threads:
        total.latencies += thread.samples.latencies
        total.errors += thread.samples.errors
        for kind, count in thread.samples.error_kinds.items():
            total.error_kinds[kind] = total.error_kinds.get(kind, 0) + count
        total.bytes += thread.samples.bytes
        for query, values in thread.samples.by_query.items():
            total.by_query.setdefault(query, []).extend(values)
    return total


def merge(into: Samples, more: Samples) -> None:
    into.latencies += more.latencies
    into.errors += more.errors
    for kind, count in more.error_kinds.items():
        into.error_kinds[kind] = into.error_kinds.get(kind, 0) + count
    into.elapsed += more.elapsed
    into.bytes += more.bytes
    into.server_cpu += more.server_cpu
    for query, values in more.by_query.items():
        into.by_query.setdefault(query, []).extend(values)


def wait_until_up(port: int, token: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode} before it answered")
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=5)
            conn.request("GET", "/api/v1/", headers={"Authorization": f"Token {token}"})
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"gunicorn did not answer on {HOST}:{port} within {timeout:.0f} s")


def stop(process: subprocess.Popen | None) -> None:
    """Stop gunicorn (its own process group: the arbiter and its workers)."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def query_counts(token: str) -> list[tuple[str, int, int]]:
    """SQL queries per request, measured in this process with Django's test client."""
    from django.db import connection
    from django.test import Client as TestClient
    from django.test.utils import CaptureQueriesContext

    client = TestClient(HTTP_AUTHORIZATION=f"Token {token}", HTTP_ACCEPT="application/json")
    client.get(f"{REAL}?page_size=1")  # a first request may also stamp the token's last_used_at
    rows = []
    for endpoint, query in ((REAL, ""), (REAL, QUERIES[0]), (REAL, QUERIES[1]), (BARE, "")):
        counts = []
        for size in (10, 100):
            path = f"{endpoint}?page_size={size}" + (f"&{query}" if query else "")
            with CaptureQueriesContext(connection) as captured:
                response = client.get(path)
            if response.status_code != 200:
                raise RuntimeError(f"GET {path} answered {response.status_code}: {response.content[:300]!r}")
            counts.append(len(captured.captured_queries))
        label = ("real " if endpoint == REAL else "bare ") + (query or "(no filter)")
        rows.append((label, *counts))
    connection.close()
    return rows


def profile(token: str, repeat: int = 30) -> str:
    """cProfile of the real endpoint, in-process, for `--profile`."""
    import cProfile
    import io
    import pstats

    from django.db import connection
    from django.test import Client as TestClient

    client = TestClient(HTTP_AUTHORIZATION=f"Token {token}", HTTP_ACCEPT="application/json")
    out = io.StringIO()
    for endpoint in (REAL, BARE):
        for query in QUERIES[:2]:
            client.get(url(endpoint, query))
        profiler = cProfile.Profile()
        began = time.perf_counter()
        profiler.enable()
        for i in range(repeat):
            client.get(url(endpoint, QUERIES[i % len(QUERIES)]))
        profiler.disable()
        mean = (time.perf_counter() - began) / repeat * 1000
        out.write(f"\n--- {endpoint}: {repeat} requests in-process, {mean:.1f} ms each under cProfile ---\n")
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
    connection.close()
    return out.getvalue()


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}), "
            f"Python {platform.python_version()}")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def row(name: str, clients: int, s: Samples) -> str:
    n = len(s.latencies)
    rate = n / s.elapsed if s.elapsed else 0.0
    cpu = s.server_cpu / n * 1000 if n else float("nan")
    size = s.bytes / n / 1024 if n else 0.0
    return (f"{name:<32}{clients:>8}{n:>9}{s.errors:>7}{ms(percentile(s.latencies, 50)):>9}"
            f"{ms(percentile(s.latencies, 99)):>9}{rate:>8.1f}{cpu:>12.1f}{size:>10.1f}")


NAMES = {REAL: "GET /api/v1/vms/ (real)", BARE: "GET /bench/bare/vms/ (bare DRF)", PAGE: "GET /vms/ (console page)"}


def report(args, results: dict[str, Samples], single: dict[str, Samples], counts: list[tuple[str, int, int]],
           load_average: str) -> None:
    import django
    import rest_framework

    print()
    print(f"Facet API list benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"machine: {machine()}; load average before the run: {load_average}")
    print(f"stack: Django {django.get_version()}, DRF {rest_framework.VERSION}, SQLite (embedded default), "
          f"gunicorn {args.workers} workers x {args.threads} threads on {HOST}")
    print(f"load: {args.vms} VMs, page_size={PAGE_SIZE}, {len(QUERIES)} query variants; {args.clients} keep-alive "
          f"clients in {args.rounds} alternating rounds per endpoint, after {args.warmup} warm-up requests each")
    print()
    header = (f"{'endpoint':<32}{'clients':>8}{'requests':>9}{'errors':>7}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>8}"
              f"{'CPU ms/req':>12}{'KiB/resp':>10}")
    print(header)
    print("-" * len(header))
    for endpoint in ENDPOINTS:
        print(row(NAMES[endpoint], args.clients, results[endpoint]))
    for endpoint in ENDPOINTS:
        print(row(NAMES[endpoint], 1, single[endpoint]))
    for endpoint in ENDPOINTS:
        for samples in (results[endpoint], single[endpoint]):
            for kind, count in samples.error_kinds.items():
                print(f"  errors: {count} x {kind}")
    real, bare = results[REAL].latencies, results[BARE].latencies
    p50_ratio = percentile(real, 50) / percentile(bare, 50)
    p99_real, p99_ratio = percentile(real, 99) * 1000, percentile(real, 99) / percentile(bare, 99)
    cpu_ratio = (results[REAL].server_cpu / max(1, len(real))) / (results[BARE].server_cpu / max(1, len(bare)) or 1)
    print()
    print(f"ratio real/bare at {args.clients} clients: p50 {p50_ratio:.2f}x, p99 {p99_ratio:.2f}x, "
          f"server CPU per request {cpu_ratio:.2f}x")
    print(f"target p99 <= {P99_LIMIT_MS:.0f} ms:       {'met' if p99_real <= P99_LIMIT_MS else 'MISSED'} "
          f"({p99_real:.1f} ms)")
    print(f"target p99 <= {RATIO_LIMIT:.0f}x the bare view: {'met' if p99_ratio <= RATIO_LIMIT else 'MISSED'} "
          f"({p99_ratio:.2f}x)")
    print()
    print(f"per query at {args.clients} clients (the bare view ignores all parameters but page):")
    print(f"  {'query':<52}{'real p50':>9}{'real p99':>9}{'bare p50':>9}{'bare p99':>9}")
    for query in QUERIES:
        r, b = results[REAL].by_query.get(query, []), results[BARE].by_query.get(query, [])
        print(f"  {query or '(none)':<52}{ms(percentile(r, 50)):>9}{ms(percentile(r, 99)):>9}"
              f"{ms(percentile(b, 50)):>9}{ms(percentile(b, 99)):>9}")
    print()
    print("SQL queries per request (in-process, Django test client, token auth):")
    print(f"  {'request':<60}{'page_size=10':>13}{'page_size=100':>14}")
    for label, small, large in counts:
        print(f"  {label:<60}{small:>13}{large:>14}")
    constant = all(small == large for _, small, large in counts)
    print(f"  -> {'constant in the page size' if constant else 'GROWS with the page size (N+1)'}")


ENDPOINTS = (BARE, REAL, PAGE)


def console_session(user) -> str:
    """A logged-in session for the console page, made in-process (the page is behind Django's login)."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session["page_size"] = PAGE_SIZE  # as remembered after a first visit, so no request writes the session
    session.create()
    return session.session_key


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vms", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=60, help="requests per client per endpoint (all rounds)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating bare/real rounds")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up requests per client per endpoint")
    parser.add_argument("--single", type=int, default=30, help="requests of the one-client (no contention) run")
    parser.add_argument("--time-limit", type=float, default=45, help="seconds at most per round and endpoint")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--profile", action="store_true", help="also print an in-process cProfile of both views")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="facet-bench-"))
    env = {
        **os.environ,
        "FACET_DATA_DIR": str(data_dir),
        "FACET_REDIS_URL": "redis://127.0.0.1:1/0",  # GETs enqueue nothing: never contacted
        "FACET_ADMIN_PASSWORD": "bench-" + os.urandom(8).hex(),
        "FACET_ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
        "FACET_LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "bench.bench_settings",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")])),
    }
    for name in ("FACET_DATABASE_URL", "FACET_DEBUG", "FACET_SECRET_KEY", "FACET_PUBLIC_URL"):
        env.pop(name, None)
    gunicorn = None
    previous_term = signal.signal(signal.SIGTERM, _interrupt)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in background
    try:
        print(f"data dir {data_dir}: migrating and seeding {args.vms} VMs ...", flush=True)
        run([PYTHON, "manage.py", "migrate", "--no-input", "-v0"], env)
        run([PYTHON, "manage.py", "seed_demo", "--vms", str(args.vms)], env)
        (data_dir / "static").mkdir(exist_ok=True)  # STATIC_ROOT; WhiteNoise warns when it is missing

        for name in set(os.environ) - set(env):
            del os.environ[name]
        os.environ.update(env)
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        from django.contrib.auth.models import User
        from django.db import connection

        from console.core.access import create_token
        from console.core.actors import Actor

        admin = User.objects.get(username="admin")
        _, token = create_token(Actor.system(), admin, "bench")
        headers = {REAL: {"Authorization": f"Token {token}", "Accept": "application/json"},
                   PAGE: {"Cookie": f"sessionid={console_session(admin)}"}}
        headers[BARE] = headers[REAL]
        counts = query_counts(token)
        connection.close()

        port = free_port()
        print(f"starting gunicorn on {HOST}:{port} ...", flush=True)
        gunicorn = subprocess.Popen(
            [PYTHON, "-m", "gunicorn", "console.wsgi:application", "--bind", f"{HOST}:{port}",
             "--workers", str(args.workers), "--threads", str(args.threads), "--timeout", "120",
             "--log-level", "warning"],
            cwd=ROOT, env=env, start_new_session=True)
        wait_until_up(port, token, gunicorn)

        def measure(endpoint: str, clients: int, per_client: int) -> Samples:
            return load(port, headers[endpoint], endpoint, clients, per_client, args.time_limit, gunicorn.pid)

        print("warming up ...", flush=True)
        for endpoint in ENDPOINTS:
            warm = measure(endpoint, args.clients, args.warmup)
            if warm.errors:
                raise RuntimeError(f"{warm.errors} warm-up requests to {endpoint} failed: {warm.error_kinds}")
        load_average = " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() \
            else "n/a"
        results = {endpoint: Samples() for endpoint in ENDPOINTS}
        per_round = max(1, args.requests // args.rounds)
        for round_number in range(args.rounds):
            for endpoint in ENDPOINTS:
                print(f"round {round_number + 1}/{args.rounds}: {args.clients} clients x {per_round} requests "
                      f"to {endpoint} ...", flush=True)
                merge(results[endpoint], measure(endpoint, args.clients, per_round))
        single = {}
        for endpoint in ENDPOINTS:
            print(f"one client x {args.single} requests to {endpoint} ...", flush=True)
            single[endpoint] = measure(endpoint, 1, args.single)
        stop(gunicorn)
        report(args, results, single, counts, load_average)
        if args.profile:
            print(profile(token))
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        stop(gunicorn)
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)
        if args.keep:
            print(f"kept {data_dir}", file=sys.stderr)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

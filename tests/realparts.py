"""Real parts for integration and browser tests: a redis-server on a private unix socket, and Celery worker and beat
and gunicorn web processes sharing the test database file."""

import asyncio
import concurrent.futures
import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from console.celery import app
from console.services import processes
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[1]  # the checkout: its code, not whatever the venv points at


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url():
    if not shutil.which("redis-server"):
        pytest.fail("redis-server is not installed (make test installs it)")
    directory = Path(tempfile.mkdtemp(prefix="facet-it-"))  # short: unix socket paths stop at 108 bytes
    socket_path = directory / "redis.sock"
    server = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", str(socket_path),
                               "--save", "", "--appendonly", "no", "--dir", str(directory)],
                              stdout=subprocess.DEVNULL)
    wait_for(socket_path.exists, 10, "redis-server to listen")
    url = f"unix://{socket_path}"
    app.conf.broker_url = f"redis+socket://{socket_path}"  # where this test process sends tasks
    yield url
    server.terminate()
    server.wait(10)
    shutil.rmtree(directory, ignore_errors=True)


class Processes:
    """Celery processes started for one test, each in its own process group so a test can kill it whole."""

    def __init__(self, redis_url: str, log_dir: Path) -> None:
        self.redis_url = redis_url
        self.log_dir = log_dir
        self.running: list[subprocess.Popen] = []

    def env(self, **overrides: str) -> dict:
        database = connection.settings_dict
        env = {
            **os.environ,
            "FACET_DATABASE_URL": f"sqlite:///{database['NAME']}",
            "FACET_REDIS_URL": self.redis_url,
            "FACET_DATA_DIR": str(settings.DATA_DIR),
            # The test's own secret key (read before a test moved DATA_DIR), shared as one installation shares it.
            "FACET_SECRET_KEY": settings.SECRET_KEY,
            "FACET_TASK_HEARTBEAT_SECONDS": "0.5",
            "FACET_TASK_STALE_SECONDS": "3",
            "FACET_REAP_INTERVAL_SECONDS": "1",
            "PYTHONPATH": str(ROOT),
        }
        env.update(overrides)
        return env

    def start(self, name: str, command: str, ready_line: str | None, **env: str) -> subprocess.Popen:
        log = self.log_dir / f"{name}-{len(self.running)}.log"
        process = subprocess.Popen(shlex.split(command), cwd=ROOT, env=self.env(**env), start_new_session=True,
                                   stdout=log.open("w"), stderr=subprocess.STDOUT)
        self.running.append(process)
        if ready_line:
            wait_for(lambda: ready_line in log.read_text() or process.poll() is not None, 60, f"{name} to start")
            assert process.poll() is None, f"{name} exited:\n{log.read_text()}"
        return process

    def worker(self, follow_hosts: bool = False, **env: str) -> subprocess.Popen:
        command = processes.worker_command(processes.worker_queues(), concurrency=2, follow_hosts=follow_hosts)
        return self.start("worker", command, "ready.", **env)

    def beat(self, **env: str) -> subprocess.Popen:
        return self.start("beat", processes.beat_command(self.log_dir / "beat-schedule"), "beat: Starting", **env)

    def web(self, workers: int = 1, **env: str) -> str:
        """A gunicorn web process on a free loopback port, as `manage.py serve` starts it; answers its URL."""
        port = free_port()
        self.start("web", processes.web_command(port, workers=workers), "Booting worker", **env)
        return f"http://127.0.0.1:{port}"

    @staticmethod
    def kill(process: subprocess.Popen) -> None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)

    def stop_all(self) -> None:
        for process in self.running:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    self.kill(process)

    def logs(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in sorted(self.log_dir.glob("*.log")))


@pytest.fixture
def celery_processes(redis_url, transactional_db, tmp_path, request):
    started = Processes(redis_url, tmp_path)
    yield started
    started.stop_all()
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        print(started.logs(), file=sys.stderr)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@contextlib.contextmanager
def asgi_server(application):
    """An ASGI application served by a real uvicorn on a free loopback port, in a thread, as `manage.py serve`
    runs the console's ASGI tier. Yields "127.0.0.1:PORT"."""
    import uvicorn

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(application, ws="websockets-sansio", lifespan="off", log_level="warning",
                                           ws_max_size=1024 * 1024))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 10, "uvicorn to start")
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)


def run_coroutine(coroutine):
    """Run a coroutine to its end on a new event loop in a thread of its own: once a browser test has started
    Playwright, its sync API keeps an event loop marked running in the main thread for the rest of the
    session, and `asyncio.run` there refuses to start."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()

"""The processes of one Facet installation, as `manage.py serve` starts them (and tests reuse)."""

import shlex
import sys
from pathlib import Path

from django.conf import settings

from ..models import Host


def worker_queues(host_names: list[str] | None = None) -> list[str]:
    """`default` plus the queue of each host this worker serves (all hosts when none are named)."""
    hosts = Host.objects.all() if not host_names else Host.objects.filter(name__in=host_names)
    return ["default", *(host.queue for host in hosts)]


def redis_command(socket_path: Path) -> str:
    return shlex.join([
        "redis-server", "--port", "0", "--unixsocket", str(socket_path), "--unixsocketperm", "700",
        "--dir", str(settings.DATA_DIR), "--dbfilename", "redis.rdb", "--save", "60", "1", "--appendonly", "no",
    ])


def worker_command(queues: list[str], concurrency: int = 4, follow_hosts: bool = False) -> str:
    """A worker on `queues`; with `follow_hosts`, also on the queue of every host added while it runs."""
    return shlex.join([
        sys.executable, "-m", "celery", "-A", "console", "worker", "--loglevel", "INFO",
        "--pool", "threads", "--concurrency", str(concurrency), "-Q", ",".join(queues),
        "--hostname", "worker@%h", "--without-gossip", "--without-mingle",
        *(["--follow-hosts"] if follow_hosts else []),
    ])


def beat_command(schedule: Path | None = None) -> str:
    return shlex.join([
        sys.executable, "-m", "celery", "-A", "console", "beat", "--loglevel", "INFO",
        "--schedule", str(schedule or Path(settings.DATA_DIR) / "celerybeat-schedule"),
    ])


def web_command(port: int, workers: int = 3) -> str:
    return shlex.join([
        sys.executable, "-m", "gunicorn", "console.wsgi:application", "--bind", f"127.0.0.1:{port}",
        "--workers", str(workers), "--threads", "4", "--access-logfile", "-", "--timeout", "3600",
    ])


def asgi_command(port: int) -> str:
    """The ASGI tier (uvicorn): the browser consoles' websockets, on loopback (a reverse proxy fronts it)."""
    return shlex.join([
        sys.executable, "-m", "uvicorn", "console.asgi:application", "--host", "127.0.0.1", "--port", str(port),
        "--ws", "websockets-sansio", "--ws-max-size", str(1024 * 1024), "--ws-ping-interval", "20",
        "--no-access-log", "--lifespan", "off",
    ])


def guest_tools_service_command(host_name: str) -> str:
    return shlex.join([sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "guest_tools_service",
                       "--host", host_name])


def sim_guests_command(host_name: str) -> str:
    return shlex.join([sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "sim_guests",
                       "--host", host_name])


def guest_tools_service_host(host_names: list[str] | None = None) -> str | None:
    """The host whose Guest Tools Service instance `serve` starts: the first one served (one machine runs
    one instance; each further host runs its own)."""
    hosts = Host.objects.all() if not host_names else Host.objects.filter(name__in=host_names)
    host = hosts.order_by("name").first()
    return host.name if host else None

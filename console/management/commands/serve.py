import os
import shutil
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from honcho.manager import Manager

from console.models import Host
from console.services import processes


class Command(BaseCommand):
    help = ("Run the console in the foreground: its own redis-server (unless FACET_REDIS_URL is set), "
            "a Celery worker, celery beat, gunicorn, uvicorn for the consoles' websockets (on --port + 1) and a Guest "
            "Tools Service instance, until Ctrl-C.")

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)))
        parser.add_argument("--host", action="append", dest="hosts", help="serve this host's queue (repeatable; "
                            "default: every host, as one machine does in the embedded setup)")

    def handle(self, *args, port: int, hosts: list[str] | None, **options):
        manager = Manager()
        if "FACET_REDIS_URL" not in os.environ:
            manager.add_process("redis", processes.redis_command(self._redis_socket()))
        # Serving every host (no --host), the worker also takes on hosts added while it runs.
        manager.add_process("worker", processes.worker_command(processes.worker_queues(hosts),
                                                               follow_hosts=not hosts))
        manager.add_process("beat", processes.beat_command())
        # Without a public URL (a reverse proxy sending /ws/ to the ASGI tier), browsers open the consoles'
        # websockets on the ASGI port itself; the pages say so through FACET_WEBSOCKET_URL.
        asgi_port = port + 1
        if "FACET_PUBLIC_URL" not in os.environ:
            os.environ.setdefault("FACET_WEBSOCKET_URL", f"ws://127.0.0.1:{asgi_port}")
        manager.add_process("web", processes.web_command(port))
        manager.add_process("asgi", processes.asgi_command(asgi_port))
        guest_tools_host = processes.guest_tools_service_host(hosts)
        if guest_tools_host is not None:
            manager.add_process("guest-tools", processes.guest_tools_service_command(guest_tools_host))
            if Host.objects.get(name=guest_tools_host).driver_uri.startswith("sim:"):  # so are its VMs' guests
                manager.add_process("sim-guests", processes.sim_guests_command(guest_tools_host))
        url = os.environ.get("FACET_PUBLIC_URL") or f"http://127.0.0.1:{port}"
        self.stdout.write(self.style.SUCCESS(f"Facet console: {url}   (Ctrl-C stops it)"))
        manager.loop()
        raise SystemExit(manager.returncode)

    def _redis_socket(self) -> Path:
        if not shutil.which("redis-server"):
            raise CommandError("redis-server is not installed: apt-get install redis-server "
                               "(or point FACET_REDIS_URL at a Redis you run)")
        socket_path = Path(settings.REDIS_URL.removeprefix("unix://"))
        try:
            socket_path.parent.mkdir(parents=True, exist_ok=True)
        except PermissionError:
            raise CommandError(f"cannot create {socket_path.parent}: run as root, or set FACET_REDIS_URL to "
                               "unix:///a/writable/dir/redis.sock (at most 108 bytes)") from None
        if len(str(socket_path)) > 107:
            raise CommandError(f"the Redis socket path {socket_path} is over 107 bytes; choose a shorter one")
        return socket_path

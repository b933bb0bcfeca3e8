"""`facet-volume-plugin` (or `python -m containers.plugin`): introduce this host to the console, reconcile
what a previous run left, then serve Docker's legacy volume plugin protocol on a unix socket (mode 0600)."""

import logging
import os
import signal
import socketserver
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from . import VERSION, protocol
from .config import Config, ConfigError
from .devices import DeviceError
from .driver import VolumeDriver
from .facet_api import ConsoleError, Deadline, FacetApi
from .state import StateUnreadable

log = logging.getLogger("facet-volume-plugin")
MAX_REQUEST_BYTES = 1024 * 1024


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: Path, driver: VolumeDriver) -> None:
        self.driver = driver
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        old_umask = os.umask(0o177)  # the socket is born 0600: only root (dockerd) may talk to it
        try:
            super().__init__(str(path), Handler)
        finally:
            os.umask(old_umask)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def do_POST(self) -> None:
        endpoint = self.path.split("?", 1)[0]
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST_BYTES:
            self._send(413, protocol.error("request too large"))
            return
        body = self.rfile.read(length)
        began = time.monotonic()
        try:
            request = protocol.parse_request(endpoint, body)
            reply = protocol.answer(**self.server.driver.handle(endpoint, request))
        except (protocol.ProtocolError, ConsoleError, DeviceError) as exc:
            log.warning("%s %s: %s", endpoint, body[:200], exc)
            reply = protocol.error(str(exc))
        except Exception as exc:  # a bug must still answer Docker, which would otherwise wait
            log.exception("%s failed", endpoint)
            reply = protocol.error(f"internal error in facet-volume-plugin: {type(exc).__name__}: {exc}")
        log.debug("%s %s: %.1f ms", endpoint, body[:80], (time.monotonic() - began) * 1000)
        self._send(200, reply)

    def _send(self, status: int, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", protocol.CONTENT_TYPE)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def address_string(self) -> str:
        return "docker"  # a unix socket peer has no address

    def log_message(self, format: str, *args) -> None:
        log.debug(format, *args)


def docker_version() -> str:
    try:
        return subprocess.run(["dockerd", "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def hello(config: Config, api: FacetApi) -> None:
    """Say who we are; a registered machine proves it sees the storage containers by reading the probe the
    console wrote into each. The console refuses a machine that sees none, saying why."""
    me = api.call("GET", "", Deadline(config.call_seconds))
    if me["name"] != config.docker_host:
        raise ConsoleError(f"FACET_TOKEN belongs to Docker host {me['name']!r}, not {config.docker_host!r}")
    probes = {}
    for container in me["containers"]:
        try:
            probes[container["uuid"]] = Path(container["probe"]).read_text().strip()[:64]
        except OSError as exc:
            log.info("storage container %s is not visible here: %s", container["name"], exc)
    api.call("POST", "hello/", Deadline(config.call_seconds), {
        "docker_version": docker_version(), "plugin_version": VERSION, "probes": probes})


def main() -> int:
    logging.basicConfig(level=os.environ.get("FACET_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = Config.from_environment()
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    api = FacetApi(config.url, config.token)
    try:
        hello(config, api)
    except ConsoleError as exc:
        log.error("%s", exc)
        return 1
    try:
        driver = VolumeDriver(config, api)
    except StateUnreadable as exc:
        log.error("%s", exc)
        return 1
    try:
        driver.reconcile()
    except ConsoleError as exc:  # the mounts are sorted out; the upkeep tells the console the rest
        log.error("reconcile: %s", exc)
    driver.upkeep.start()
    server = Server(config.socket, driver)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    log.info("serving %s as Docker host %s (console %s)", config.socket, config.docker_host, config.url)
    try:
        server.serve_forever()
    finally:
        config.socket.unlink(missing_ok=True)
        api.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

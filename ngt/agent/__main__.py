"""facet-guest-tools: the in-guest agent (`run`, what the systemd unit starts) and `status`.

It talks over the virtio-serial port when the guest has one, else over TLS 1.3 to the cluster VIP with the
VM's client certificate, checking the server against the CA from the tools ISO. It reconnects with jittered
backoff and rescans for a new tools ISO every 30 s."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import os
import random
import ssl
import subprocess
import sys
import time
import tty
from pathlib import Path

from . import AGENT_VERSION, config, freeze, guest, protocol, restore

log = logging.getLogger("facet-guest-tools")
SERIAL_PORT = "/dev/virtio-ports/org.facet.guest_tools.0"
STATE_DIR = "/run/facet-guest-tools"
POWER_COMMANDS = {"shutdown": ["systemctl", "poweroff"], "reboot": ["systemctl", "reboot"]}
SLOW_COMMANDS = ("freeze", "thaw")
POWER_DELAY = 1.0  # seconds between the reply to shutdown/reboot and the deed, so the reply gets out
BACKOFF_BASE, BACKOFF_CAP = 1.0, 5.0


class IdentityChanged(Exception):
    """A new tools ISO names another VM or certificate: the session ends and the agent talks as that one."""


def backoff(failures: int) -> float:
    """Jittered, so that agents cut off together do not all come back in the same second."""
    return min(BACKOFF_CAP, BACKOFF_BASE * 2 ** min(failures, 8)) * random.uniform(0.5, 1.0)  # noqa: S311


async def open_serial(path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """The virtio-serial port (or a pty standing for it) as a stream pair."""
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    if os.isatty(fd):
        tty.setraw(fd)  # no echo, no line discipline: JSON lines pass as they are
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=protocol.MAX_LINE)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0))
    transport, stream_protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(os.dup(fd), "wb", buffering=0))
    return reader, asyncio.StreamWriter(transport, stream_protocol, reader, loop)


def tls_context(agent_config: config.AgentConfig) -> ssl.SSLContext:
    """TLS 1.3 only, our certificate offered, the server checked against the ISO's CA (and that CA against
    the fingerprint in ngt.json)."""
    ca_pem = agent_config.path(config.CA_FILE).read_text()
    digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(ca_pem)).hexdigest().upper()
    expected = agent_config.ca_fingerprint.replace(":", "").upper()
    if expected and digest != expected:
        raise ssl.SSLError(f"ca.pem has fingerprint {digest}, not the {expected} that ngt.json names")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_verify_locations(cadata=ca_pem)
    context.load_cert_chain(agent_config.path(config.CERTIFICATE_FILE), agent_config.path(config.KEY_FILE))
    return context


class Agent:
    def __init__(self, options: argparse.Namespace) -> None:
        self.options = options
        self.state: dict = {"agent_version": AGENT_VERSION, "connected": False}
        self.freezer = freeze.Freezer(options.fsfreeze_command.split(), Path(options.hooks_dir),
                                      Path(options.state_dir))
        self.writer: asyncio.StreamWriter | None = None  # the session's, while there is one
        self.pending: dict[str, asyncio.Future] = {}  # our requests to the service, by id

    def discover(self) -> config.AgentConfig | None:
        media = Path(self.options.media) if self.options.media else None
        return config.discover(media, Path(self.options.config_dir))

    def save_state(self, **changes: object) -> None:
        """What `facet-guest-tools status` prints."""
        self.state.update(changes)
        directory = Path(self.options.state_dir)
        with contextlib.suppress(OSError):
            directory.mkdir(parents=True, exist_ok=True)
            partial = directory / ".status.json"
            partial.write_text(json.dumps(self.state, indent=2) + "\n")
            partial.replace(directory / "status.json")

    async def connect(self, agent_config: config.AgentConfig) -> tuple:
        serial = self.options.serial
        if serial and os.path.exists(serial):
            return (*await open_serial(serial), f"serial {serial}")
        reader, writer = await asyncio.wait_for(asyncio.open_connection(
            agent_config.cluster_vip, agent_config.port, ssl=tls_context(agent_config),
            server_hostname=agent_config.cluster_vip, limit=protocol.MAX_LINE), 15)
        return reader, writer, f"tls {agent_config.cluster_vip}:{agent_config.port}"

    async def run(self) -> None:
        self.freezer.thaw_leftovers()
        await self.serve_restore()
        failures = 0
        while True:
            agent_config = self.discover()
            if agent_config is None:
                log.info("no configuration yet (no tools ISO, nothing in %s)", self.options.config_dir)
                await asyncio.sleep(self.options.scan)
                continue
            try:
                await self.session(agent_config)
            except IdentityChanged:
                failures = 0
                continue
            # asyncio.TimeoutError is not the builtin before 3.11; ValueError is StreamReader's line limit.
            except (OSError, ssl.SSLError, asyncio.TimeoutError, asyncio.IncompleteReadError,  # noqa: UP041
                    asyncio.LimitOverrunError, ValueError) as exc:
                failures += 1
                log.warning("connection lost or refused: %s", exc or type(exc).__name__)
            self.save_state(connected=False)
            await asyncio.sleep(backoff(failures))

    async def session(self, agent_config: config.AgentConfig) -> None:
        reader, writer, transport = await self.connect(agent_config)
        log.info("connected over %s as VM %s", transport, agent_config.vm_uuid)
        self.save_state(connected=True, transport=transport, vm_uuid=agent_config.vm_uuid,
                        certificate_serial=agent_config.certificate_serial, since=time.time())
        self.writer = writer
        tasks = [asyncio.ensure_future(job) for job in (
            self.read(agent_config, reader, writer), self.heartbeats(agent_config, writer),
            self.rescan(agent_config))]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # raises what ended the session
            raise ConnectionResetError("the service closed the connection")
        finally:
            self.writer = None
            for future in self.pending.values():
                if not future.done():
                    future.set_result({"ok": False, "error": "the link to the console ended"})
            self.pending.clear()
            for task in tasks:
                task.cancel()
            writer.close()

    def hello(self, agent_config: config.AgentConfig) -> dict:
        return protocol.hello(agent_config.vm_uuid, agent_config.certificate_serial, AGENT_VERSION,
                              list(agent_config.capabilities), guest.facts(self.cloud_init_dir))

    @property
    def cloud_init_dir(self) -> Path:
        return Path(self.options.cloud_init_dir)

    async def heartbeats(self, agent_config: config.AgentConfig, writer: asyncio.StreamWriter) -> None:
        """A hello first, and again instead of each heartbeat until the service welcomes it: on serial
        nobody may be listening yet. Once welcomed, cloud-init's status each time it changed (the first
        time in each session): the console learns the guest's own result of its customization."""
        reported = None
        while True:
            welcomed = self.state.get("welcomed")
            messages = [protocol.heartbeat() if welcomed else self.hello(agent_config)]
            status = guest.customization_status(self.cloud_init_dir) if welcomed else None
            if status and status["status"] != "unknown" and status != reported:
                messages.append(protocol.customization(status))
                reported = status
            for message in messages:
                writer.write(protocol.encode(message))
            await writer.drain()
            self.save_state(last_sent=time.time())
            await asyncio.sleep(self.options.heartbeat)

    async def rescan(self, agent_config: config.AgentConfig) -> None:
        while True:
            await asyncio.sleep(self.options.scan)
            found = await asyncio.get_running_loop().run_in_executor(None, self.discover)
            if found is not None and found.identity != agent_config.identity:
                raise IdentityChanged(found.vm_uuid)

    async def read(self, agent_config: config.AgentConfig, reader: asyncio.StreamReader,
                   writer: asyncio.StreamWriter) -> None:
        self.save_state(welcomed=False)
        while True:
            line = await reader.readline()
            if not line:
                return
            try:
                message = protocol.decode(line)
            except protocol.ProtocolError as exc:
                log.warning("ignoring a line from the service: %s", exc)
                continue
            if message["type"] in SLOW_COMMANDS:  # subprocesses: heartbeats go on meanwhile
                answer = await asyncio.get_running_loop().run_in_executor(None, self.answer, agent_config, message)
            else:
                answer = self.answer(agent_config, message)
            if answer is not None:
                writer.write(protocol.encode(answer))
                await writer.drain()

    def answer(self, agent_config: config.AgentConfig, message: dict) -> dict | None:
        """The reply to one message from the service (None for those that want none)."""
        kind = message["type"]
        if kind == "welcome":
            self.save_state(welcomed=True, last_welcome=time.time())
            return None
        if kind == "hello_request":
            self.save_state(welcomed=False)
            return self.hello(agent_config)
        if kind == "refused":
            log.error("the service refused this agent: %s", message.get("reason", ""))
            raise ConnectionRefusedError(message.get("reason", "refused"))
        if kind == "reply" and message["id"] in self.pending:
            self.pending.pop(message["id"]).set_result(message)
            return None
        if kind in ("reply", "heartbeat_ack"):
            return None
        if kind == "ssr_unmount":
            try:
                return protocol.reply(message, unmounted=restore.unmount(str(message.get("snapshot") or "")))
            except (restore.RestoreError, OSError, subprocess.SubprocessError) as exc:
                return protocol.error(message, f"ssr_unmount failed: {exc}")
        if kind == "get_info":
            return protocol.reply(message, agent_version=AGENT_VERSION, **guest.facts(self.cloud_init_dir))
        if kind == "customization_status":
            return protocol.reply(message, **guest.customization_status(self.cloud_init_dir))
        if kind in ("freeze", "thaw"):
            return self.freeze_or_thaw(message)
        if kind in POWER_COMMANDS:
            asyncio.get_running_loop().call_later(POWER_DELAY, self.power, kind)
            return protocol.reply(message, accepted=kind)
        return protocol.error(message, f"unknown command {kind!r}")

    async def serve_restore(self) -> None:
        """The socket `facet-guest-tools ssr` talks to (root only)."""
        path = Path(self.options.state_dir) / restore.SOCKET_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        server = await asyncio.start_unix_server(self.restore_client, str(path))
        os.chmod(path, 0o600)
        self.restore_server = server  # kept for the life of the agent

    async def restore_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            request = json.loads(line) if line else {}
            answer = await self.restore_request(str(request.get("action", "")), str(request.get("snapshot") or ""))
        except (ValueError, AttributeError, asyncio.TimeoutError) as exc:  # noqa: UP041
            answer = {"ok": False, "error": f"not a request: {exc}"}
        writer.write(json.dumps(answer).encode() + b"\n")
        with contextlib.suppress(OSError):
            await writer.drain()
        writer.close()

    async def restore_request(self, action: str, name: str) -> dict:
        loop = asyncio.get_running_loop()
        try:
            if name:
                restore.checked_name(name)
            if action == "detach":  # unmounted before the disk goes
                await loop.run_in_executor(None, restore.unmount, name)
            answer = await self.ask_service({"type": "ssr", "action": action, "snapshot": name})
            if action == "attach" and answer.get("ok"):
                log.info("snapshot %s attached as %s: mounting it read-only", name, ", ".join(answer["serials"]))
                answer["mounted"] = await loop.run_in_executor(None, restore.mount, name, answer["serials"])
            log.info("ssr %s %s: %s", action, name, "done" if answer.get("ok") else answer.get("error"))
            return answer
        except (restore.RestoreError, OSError, subprocess.SubprocessError) as exc:
            return {"ok": False, "error": str(exc)}

    async def ask_service(self, message: dict) -> dict:
        if self.writer is None:
            return {"ok": False, "error": "the agent has no link to the console now"}
        message["id"] = protocol.next_id()
        future = self.pending[message["id"]] = asyncio.get_running_loop().create_future()
        self.writer.write(protocol.encode(message))
        await self.writer.drain()
        try:
            return await asyncio.wait_for(future, restore.REQUEST_SECONDS)
        except asyncio.TimeoutError:  # noqa: UP041
            self.pending.pop(message["id"], None)
            return {"ok": False, "error": f"the console did not answer within {restore.REQUEST_SECONDS} s"}

    def freeze_or_thaw(self, message: dict) -> dict:
        if "vss-snapshot" not in self.discovered_capabilities():
            return protocol.error(message, "the vss-snapshot capability is off for this VM")
        try:
            if message["type"] == "freeze":
                return protocol.reply(message, **self.freezer.freeze(message.get("timeout", 30)))
            return protocol.reply(message, **self.freezer.thaw())
        except (freeze.FreezeError, OSError, ValueError, TypeError) as exc:
            log.error("%s failed: %s", message["type"], exc)
            return protocol.error(message, f"{message['type']} failed: {exc}")

    def discovered_capabilities(self) -> tuple:
        found = self.discover()
        return found.capabilities if found else ()

    def power(self, action: str) -> None:
        command = [self.options.power_command, action] if self.options.power_command else POWER_COMMANDS[action]
        log.info("%s requested by the console: running %s", action, " ".join(command))
        subprocess.Popen(command)


def print_status(options: argparse.Namespace) -> int:
    installed = config.load(Path(options.config_dir))
    try:
        state = json.loads((Path(options.state_dir) / "status.json").read_text())
    except (OSError, ValueError):
        state = {}
    print(f"agent version:      {AGENT_VERSION}")
    print(f"VM uuid:            {installed.vm_uuid if installed else '(no configuration installed)'}")
    print(f"certificate serial: {installed.certificate_serial if installed else '-'}")
    print(f"link:               {'active over ' + state['transport'] if state.get('connected') else 'inactive'}")
    if state.get("last_sent"):
        print(f"last message sent:  {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(state['last_sent']))}")
    return 0 if state.get("connected") else 3  # systemctl's "not running"


def parse(argv: list[str]) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="facet-guest-tools", description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", default="run", choices=("run", "status", "ssr", "thaw-watchdog"))
    parser.add_argument("ssr", nargs="*", metavar="list|attach SNAPSHOT|detach [SNAPSHOT]",
                        help="self-service restore: the VM's snapshots, mounted read-only under "
                             f"{restore.RESTORE_ROOT}/SNAPSHOT/")
    parser.add_argument("--mount", action="append", default=[], help=argparse.SUPPRESS)  # thaw-watchdog's
    parser.add_argument("--after", type=float, default=30.0, help=argparse.SUPPRESS)
    parser.add_argument("--config-dir", default=env("FACET_GUEST_TOOLS_CONFIG_DIR", str(config.INSTALLED_DIR)))
    parser.add_argument("--media", default=env("FACET_GUEST_TOOLS_MEDIA", ""),
                        help="a directory standing for the tools ISO (else the FACET_TOOLS device)")
    parser.add_argument("--serial", default=env("FACET_GUEST_TOOLS_SERIAL", SERIAL_PORT),
                        help="the serial port; empty to use TLS only")
    parser.add_argument("--state-dir", default=env("FACET_GUEST_TOOLS_STATE_DIR", STATE_DIR))
    parser.add_argument("--cloud-init-dir", default=env("FACET_CLOUD_INIT_DIR", str(guest.CLOUD_INIT_DIR)))
    parser.add_argument("--power-command", default=env("FACET_GUEST_TOOLS_POWER_COMMAND", ""),
                        help="run as PROGRAM shutdown|reboot instead of systemctl poweroff|reboot")
    parser.add_argument("--fsfreeze-command", default=env("FACET_GUEST_TOOLS_FSFREEZE", "fsfreeze"),
                        help="the program run as PROGRAM -f|-u MOUNT to freeze and thaw (vss-snapshot)")
    parser.add_argument("--hooks-dir", default=env("FACET_GUEST_TOOLS_HOOKS_DIR", freeze.HOOKS_DIR),
                        help="executables run with freeze before a consistent snapshot and thaw after it")
    parser.add_argument("--heartbeat", type=float, default=float(env("FACET_GUEST_TOOLS_HEARTBEAT", "10")))
    parser.add_argument("--scan", type=float, default=float(env("FACET_GUEST_TOOLS_SCAN", "30")))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    options = parse(sys.argv[1:] if argv is None else argv)
    if options.command == "status":
        return print_status(options)
    if options.command == "ssr":
        action, *rest = options.ssr or ["list"]
        if action not in ("list", "attach", "detach") or len(rest) > 1:
            print("usage: facet-guest-tools ssr list | attach SNAPSHOT | detach [SNAPSHOT]", file=sys.stderr)
            return 2
        return restore.command(action, rest[0] if rest else "", Path(options.state_dir))
    if options.command == "thaw-watchdog":
        return freeze.watchdog(options.after, options.fsfreeze_command.split(), Path(options.hooks_dir),
                               Path(options.state_dir), options.mount)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(Agent(options).run())
    return 0


if __name__ == "__main__":
    sys.exit(main())

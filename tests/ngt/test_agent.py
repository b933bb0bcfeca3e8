"""The in-guest agent: its protocol, configuration discovery and cloud-init reading in process, and the real
agent process over TLS (against a TLS server standing for the service) and over a pty standing for the
virtio-serial port."""

import ast
import json
import os
import random
import socket
import ssl
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ngt.agent import AGENT_VERSION, config, guest, protocol
from ngt.daemon.certificates import server_identity
from ngt.models import TOOLS_VERSION
from ngt.services import authority, guest_tools
from tests.ngt.conftest import iso_file
from tests.realparts import wait_for

REPOSITORY = Path(__file__).resolve().parents[2]
CONFIG_FILES = ("ngt.json", "ca.pem", "client.pem", "client.key")


def write_media(directory: Path, vm_uuid: str = "0f3e", serial: str = "01", vip: str = "127.0.0.10",
                ca: str = "the cluster's CA") -> Path:
    """A directory laid out as the tools ISO's config/: one CA per cluster, a pair per certificate serial."""
    config_dir = directory / "config"
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "ngt.json").write_text(json.dumps({
        "vm_uuid": vm_uuid, "cluster_vip": vip, "port": 2074, "channel": "org.facet.guest_tools.0",
        "ca_fingerprint_sha256": "", "certificate_serial": serial, "capabilities": [], "tools_version": "1.0.0"}))
    (config_dir / "ca.pem").write_text(f"{ca}\n")
    for name in ("client.pem", "client.key"):
        (config_dir / name).write_text(f"{name} of {serial}\n")
    return directory


@pytest.mark.parametrize("module", sorted((REPOSITORY / "ngt/agent").glob("*.py")), ids=lambda path: path.name)
def test_the_agent_is_python_3_9(module):
    ast.parse(module.read_text(), feature_version=(3, 9))


def test_versions_agree():
    assert AGENT_VERSION == TOOLS_VERSION


@pytest.mark.parametrize("line", [b"not json\n", b"[1, 2]\n", b'{"id": 1, "type": "x"}\n', b'{"type": "x"}\n',
                                  b'{"id": "1", "type": "' + b"x" * protocol.MAX_LINE + b'"}\n'])
def test_lines_that_are_not_messages_are_refused(line):
    with pytest.raises(protocol.ProtocolError):
        protocol.decode(line)


def test_a_reply_carries_the_commands_id():
    command = protocol.decode(b'{"id": "s7", "type": "get_info"}\n')
    assert protocol.decode(protocol.encode(protocol.reply(command, uptime=3))) == {
        "id": "s7", "type": "reply", "ok": True, "uptime": 3}
    with pytest.raises(protocol.ProtocolError):
        protocol.encode(protocol.reply(command, blob="x" * protocol.MAX_LINE))


def test_the_iso_is_installed_with_the_key_for_root_only(tmp_path):
    installed = tmp_path / "etc"
    found = config.discover(write_media(tmp_path / "iso", serial="01"), installed)
    assert found.identity == ("0f3e", "01") and found.directory == installed
    assert sorted(path.name for path in installed.iterdir()) == sorted(CONFIG_FILES)
    assert stat.S_IMODE((installed / "client.key").stat().st_mode) == 0o600
    assert (installed / "client.key").read_text() == "client.key of 01\n"


def test_the_iso_wins_only_when_it_names_another_vm_or_serial(tmp_path):
    installed = tmp_path / "etc"
    config.discover(write_media(tmp_path / "iso", serial="01"), installed)
    before = (installed / "client.key").stat().st_ino
    config.discover(tmp_path / "iso", installed)
    assert (installed / "client.key").stat().st_ino == before  # same identity: nothing copied

    found = config.discover(write_media(tmp_path / "remount", serial="02"), installed)
    assert found.certificate_serial == "02" and (installed / "client.key").read_text() == "client.key of 02\n"
    found = config.discover(write_media(tmp_path / "clone", vm_uuid="77aa", serial="02"), installed)
    assert found.vm_uuid == "77aa"
    assert config.discover(tmp_path / "nothing", installed).vm_uuid == "77aa"  # no ISO: the installed copy
    assert not list(installed.glob(".*"))  # no partial files left behind


def test_no_iso_and_nothing_installed_is_no_configuration(tmp_path):
    assert config.discover(tmp_path / "nothing", tmp_path / "etc") is None


def test_customization_status_follows_cloud_init(tmp_path):
    assert guest.customization_status(tmp_path)["status"] == "unknown"
    (tmp_path / "status.json").write_text(json.dumps({"v1": {"stage": "modules-config"}}))
    assert guest.customization_status(tmp_path) == {"status": "running", "message": "modules-config"}
    (tmp_path / "result.json").write_text(json.dumps({"v1": {"datasource": "ConfigDrive", "errors": []}}))
    assert guest.customization_status(tmp_path)["status"] == "succeeded"
    (tmp_path / "result.json").write_text(json.dumps({"v1": {"errors": ["runcmd failed"]}}))
    assert guest.customization_status(tmp_path) == {"status": "failed", "message": "runcmd failed"}


def test_facts_name_this_guest():
    facts = guest.facts()
    assert facts["hostname"] == socket.gethostname() and facts["os"] and facts["uptime_seconds"] > 0
    assert all(not address.startswith("127.") for address in facts["ip_addresses"])


# The real agent process.

def free_vip() -> str:
    """A loopback address of the test's own, so the agent's fixed port 2074 collides with nobody."""
    return f"127.{random.randint(20, 250)}.{random.randint(0, 255)}.{random.randint(2, 254)}"  # noqa: S311


@pytest.fixture
def mounted_vm(vm, actor, run_tasks, tmp_path):
    """A VM whose tools ISO was mounted, the ISO's config/ extracted to a directory standing for the disc."""
    vm.cluster.virtual_ip = free_vip()
    vm.cluster.save()
    guest_tools.request_mount(actor, vm)
    run_tasks()
    vm.refresh_from_db()
    return vm, extract_media(vm, tmp_path / "media")


def extract_media(vm, media: Path) -> Path:
    """The config/ of the VM's tools ISO, as the guest sees the disc."""
    iso = Path(vm.cdroms.get(purpose="guest-tools").iso_path)
    (media / "config").mkdir(parents=True)
    for name in CONFIG_FILES:
        (media / "config" / name).write_bytes(iso_file(iso, f"config/{name}"))
    return media


def start_agent(tmp_path: Path, media: Path, serial: str = "", **options: str) -> subprocess.Popen:
    power_script = tmp_path / "power"
    power_script.write_text(f"#!/bin/sh\necho \"$1\" >> {tmp_path / 'power.log'}\n")
    power_script.chmod(0o755)
    arguments = {"media": str(media), "config-dir": str(tmp_path / "etc"), "serial": serial,
                 "state-dir": str(tmp_path / "state"), "heartbeat": "0.3", "power-command": str(power_script),
                 "cloud-init-dir": str(tmp_path / "cloud-init"), **options}
    command = [sys.executable, "-m", "ngt.agent", "run"]
    for name, value in arguments.items():
        command += [f"--{name}", value]
    with open(tmp_path / "agent.log", "ab") as log:
        return subprocess.Popen(command, cwd=REPOSITORY, stdout=log, stderr=subprocess.STDOUT)


def agent_log(tmp_path: Path) -> str:
    return (tmp_path / "agent.log").read_text(errors="replace")


def stop(process: subprocess.Popen) -> None:
    process.kill()
    process.wait(10)


class LineServer:
    """One accepted connection read line by line in a thread: what the test says to the agent and hears."""

    def __init__(self, connection) -> None:
        self.connection = connection
        self.lines: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buffer = b""
        while chunk := self._receive():
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                self.lines.append(json.loads(line))

    def _receive(self) -> bytes:
        try:
            return self.connection.recv(65536) if hasattr(self.connection, "recv") else os.read(self.connection, 65536)
        except OSError:
            return b""

    def send(self, message: dict) -> None:
        data = json.dumps(message).encode() + b"\n"
        if hasattr(self.connection, "sendall"):
            self.connection.sendall(data)
        else:
            os.write(self.connection, data)

    def wait_for(self, predicate, what: str) -> dict:
        return wait_for(lambda: next((line for line in list(self.lines) if predicate(line)), None), 15, what)

    def ask(self, command: dict) -> dict:
        self.send(command)
        return self.wait_for(lambda line: line.get("id") == command["id"], f"the reply to {command['type']}")


def talk_to(agent: LineServer, vm, tmp_path: Path) -> None:
    """What every transport must carry: hello, heartbeats, commands answered, shutdown run."""
    hello = agent.wait_for(lambda line: line["type"] == "hello", "hello")
    assert hello["vm_uuid"] == str(vm.uuid) and hello["certificate_serial"] == vm.guest_tools.certificate.serial
    assert hello["agent_version"] == AGENT_VERSION and hello["hostname"] == socket.gethostname()
    agent.send({"id": hello["id"], "type": "welcome"})
    agent.wait_for(lambda line: line["type"] == "heartbeat", "a heartbeat")
    info = agent.ask({"id": "s1", "type": "get_info"})
    assert info["ok"] and info["kernel"] == os.uname().release and info["cloud_init"] == "unknown"
    assert agent.ask({"id": "s2", "type": "customization_status"})["status"] == "unknown"
    assert agent.ask({"id": "s3", "type": "format_disk"})["ok"] is False
    assert agent.ask({"id": "s4", "type": "shutdown"}) == {"id": "s4", "type": "reply", "ok": True,
                                                           "accepted": "shutdown"}
    power_log = tmp_path / "power.log"
    wait_for(lambda: power_log.exists() and power_log.read_text() == "shutdown\n", 10, "the shutdown command")


@pytest.mark.slow
def test_agent_over_tls_with_its_iso_certificate(mounted_vm, tmp_path):
    vm, media = mounted_vm
    identity = server_identity(authority.open_authority(vm.cluster.guest_tools_ca), "host-1",
                               [vm.cluster.virtual_ip])
    for name, pem in (("server.pem", identity.certificate_pem), ("server.key", identity.key_pem)):
        (tmp_path / name).write_bytes(pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
    context.load_verify_locations(cadata=identity.ca_pem.decode())
    with socket.create_server((vm.cluster.virtual_ip, 2074)) as listener:
        process = start_agent(tmp_path, media)
        try:
            listener.settimeout(15)
            connection = context.wrap_socket(listener.accept()[0], server_side=True)
            assert connection.version() == "TLSv1.3"
            assert dict(item[0] for item in connection.getpeercert()["subject"])["commonName"] == str(vm.uuid)
            talk_to(LineServer(connection), vm, tmp_path)
            status = subprocess.run([sys.executable, "-m", "ngt.agent", "status", "--config-dir",
                                     str(tmp_path / "etc"), "--state-dir", str(tmp_path / "state")],
                                    cwd=REPOSITORY, capture_output=True, text=True)
            assert status.returncode == 0 and str(vm.uuid) in status.stdout
            assert f"active over tls {vm.cluster.virtual_ip}:2074" in status.stdout
            connection.close()
        finally:
            stop(process)
    assert "connected over tls" in agent_log(tmp_path)


@pytest.mark.slow
def test_agent_refuses_a_server_its_ca_did_not_sign(mounted_vm, tmp_path):
    vm, media = mounted_vm
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", tmp_path / "rogue.key", "-out", tmp_path / "rogue.pem", "-days", "1", "-subj",
                    "/CN=rogue", "-addext", f"subjectAltName=IP:{vm.cluster.virtual_ip}"],
                   check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "rogue.pem", tmp_path / "rogue.key")
    with socket.create_server((vm.cluster.virtual_ip, 2074)) as listener:
        process = start_agent(tmp_path, media)
        try:
            listener.settimeout(15)
            raw = listener.accept()[0]
            with pytest.raises((ssl.SSLError, OSError)):
                context.wrap_socket(raw, server_side=True).recv(1)
            wait_for(lambda: "certificate verify failed" in agent_log(tmp_path), 10, "the agent to say why")
        finally:
            stop(process)


@pytest.mark.slow
def test_agent_over_a_pty_standing_for_the_serial_port(mounted_vm, tmp_path):
    vm, media = mounted_vm
    host_side, guest_side = os.openpty()
    process = start_agent(tmp_path, media, serial=os.ttyname(guest_side))
    try:
        agent = LineServer(host_side)
        talk_to(agent, vm, tmp_path)
        agent.send({"id": "s9", "type": "hello_request"})
        agent.wait_for(lambda line: line["type"] == "hello" and line["id"] != "a1", "a second hello")
    finally:
        stop(process)
        os.close(host_side)
        os.close(guest_side)
    assert "connected over serial" in agent_log(tmp_path)

"""The plugin on its own: request checking, options, the state file, deadlines against a broken console, the
socket, and the driver's mount counting and reconcile with the devices and the console stubbed out."""

import http.client
import json
import os
import socket
import stat
import threading
import time
from pathlib import Path

import pytest

from containers.plugin import __main__ as daemon
from containers.plugin import driver as driver_module
from containers.plugin import protocol
from containers.plugin.config import Config, ConfigError
from containers.plugin.driver import VolumeDriver
from containers.plugin.facet_api import ConsoleError, Deadline, FacetApi
from containers.plugin.state import Mounted, State

MiB = 1024**2


@pytest.mark.parametrize(("endpoint", "body", "message"), [
    ("/VolumeDriver.Explode", b"{}", "unknown endpoint"),
    ("/VolumeDriver.Create", b"not json", "not JSON"),
    ("/VolumeDriver.Create", b"[1]", "not a JSON object"),
    ("/VolumeDriver.Create", b'{"Opts": {}}', "needs 'Name'"),
    ("/VolumeDriver.Mount", b'{"Name": "vol"}', "needs 'ID'"),
    ("/VolumeDriver.Remove", b'{"Name": 7}', "needs 'Name'"),
    ("/VolumeDriver.Get", b'{"Name": "../etc"}', "bad volume name"),
    ("/VolumeDriver.Create", b'{"Name": "vol", "Opts": ["size=1G"]}', "Opts must be an object"),
])
def test_every_request_is_checked(endpoint, body, message):
    with pytest.raises(protocol.ProtocolError, match=message):
        protocol.parse_request(endpoint, body)


def test_requests_without_a_body_are_fine():
    assert protocol.parse_request("/Plugin.Activate", b"") == {}
    assert protocol.parse_request("/VolumeDriver.List", b"null") == {}


@pytest.mark.parametrize(("opts", "expected"), [
    (None, (10 * 1024**3, "ext4", "default")),
    ({"size": "1G"}, (1024**3, "ext4", "default")),
    ({"size": "512MiB", "fstype": "XFS"}, (512 * MiB, "xfs", "default")),
    ({"sizeMb": "2048", "container": "fast"}, (2048 * MiB, "ext4", "fast")),
    ({"size": "4194304"}, (4 * MiB, "ext4", "default")),
])
def test_create_options(opts, expected):
    options = protocol.create_options(opts, "default")
    assert (options.size_bytes, options.fstype, options.container) == expected


@pytest.mark.parametrize(("opts", "message"), [
    ({"colour": "blue", "size": "1G"}, "unknown option"),
    ({"size": "ten gigs"}, "not a size"),
    ({"size": "1G", "sizeMb": "1"}, "not both"),
    ({"sizeMb": "1.5"}, "whole number of MiB"),
    ({"size": "10K"}, "too small"),
    ({"fstype": "ntfs"}, "not supported"),
    ({"fstype": "xfs", "size": "200M"}, "at least 300M"),
])
def test_bad_create_options(opts, message):
    with pytest.raises(protocol.ProtocolError, match=message):
        protocol.create_options(opts, "default")


def test_config_needs_url_token_and_host():
    with pytest.raises(ConfigError, match="FACET_TOKEN, FACET_DOCKER_HOST"):
        Config.from_environment({"FACET_URL": "http://x"})
    with pytest.raises(ConfigError, match="http:// or https://"):
        Config.from_environment({"FACET_URL": "ftp://x", "FACET_TOKEN": "t", "FACET_DOCKER_HOST": "h"})
    config = Config.from_environment({"FACET_URL": "http://x/", "FACET_TOKEN": "t", "FACET_DOCKER_HOST": "h",
                                      "FACET_VOLUMES_ROOT": "/srv/v"})
    assert (config.url, config.volumes_root, config.call_seconds) == ("http://x", Path("/srv/v"), 20.0)
    assert config.socket == Path("/run/docker/plugins/facet.sock")


def test_state_file_is_replaced_whole_and_private(tmp_path):
    path = tmp_path / "state" / "plugin.json"
    state = State(boot_id="b1", volumes={"v": Mounted("/dev/loop3", "/m/v", "/c/d.raw", True, "ext4", ["id1"])})
    state.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and list(path.parent.iterdir()) == [path]
    assert State.load(path) == state
    assert State.load(tmp_path / "absent.json") == State()


@pytest.fixture
def silent_console():
    """A console that accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    held = []
    threading.Thread(target=lambda: held.extend(listener.accept() for _ in range(100)), daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return probe.getsockname()[1]


def test_a_console_that_is_down_is_an_error_at_once():
    api = FacetApi(f"http://127.0.0.1:{closed_port()}", "key")
    started = time.monotonic()
    with pytest.raises(ConsoleError, match="cannot reach the Facet console"):
        api.call("GET", "volumes/", Deadline(20))
    assert time.monotonic() - started < 2


def test_a_silent_console_is_an_error_at_the_deadline_and_then_not_waited_for(silent_console):
    api = FacetApi(silent_console, "key")
    started = time.monotonic()
    with pytest.raises(ConsoleError, match="timed out"):
        api.call("GET", "volumes/", Deadline(1))
    assert 0.9 < time.monotonic() - started < 3
    started = time.monotonic()
    with pytest.raises(ConsoleError, match="not asked again"):
        api.call("POST", "volumes/", Deadline(1), {"name": "v"})
    assert time.monotonic() - started < 0.5


class FakeApi:
    """The console as the driver sees it: volumes by name, attachments to 'here', every call recorded."""

    def __init__(self, volumes: dict[str, dict]) -> None:
        self.volumes = volumes
        self.calls: list[tuple[str, str]] = []

    def call(self, method, path, deadline, body=None):
        self.calls.append((method, path))
        name = path.split("/")[1] if path.count("/") >= 2 else ""
        if path == "volumes/":
            return list(self.volumes.values())
        return self.volumes[name]

    def change(self, method, path, deadline, body=None):
        self.calls.append((method, path))
        name = path.split("/")[1]
        if path.endswith("/attach/"):
            self.volumes[name]["attached_here"] = True
        if path.endswith("/detach/"):
            self.volumes[name]["attached_here"] = False

    def changes(self) -> list[str]:
        return [path for method, path in self.calls if path.endswith(("attach/", "detach/"))]


class FakeDevices:
    def __init__(self) -> None:
        self.mounted: dict[str, str] = {}
        self.loops: set[str] = set()
        self.filesystems: set[str] = set()
        self.formatted = 0

    def install(self, monkeypatch) -> None:
        for name in ("attach_loop", "detach_loop", "filesystem_of", "make_filesystem", "mount", "unmount",
                     "mounts_under", "release_stray", "used_bytes", "wait_for_disk"):
            monkeypatch.setattr(driver_module.devices, name, getattr(self, name))

    def attach_loop(self, file):
        self.loops.add(str(file))
        return f"/dev/loop-{Path(file).stem}"

    def detach_loop(self, file):
        self.loops.discard(str(file))

    def wait_for_disk(self, path):
        return "/dev/vdb"

    def filesystem_of(self, device):
        return "ext4" if device in self.filesystems else ""

    def make_filesystem(self, device, fstype, label):
        self.formatted += 1
        self.filesystems.add(device)

    def mount(self, device, mountpoint):
        self.mounted[str(mountpoint)] = device

    def unmount(self, mountpoint):
        self.mounted.pop(str(mountpoint), None)

    def mounts_under(self, root):
        return {Path(p): d for p, d in self.mounted.items() if p.startswith(str(root))}

    def release_stray(self, mountpoint, device):
        self.unmount(mountpoint)

    def used_bytes(self, mountpoint):
        return 4096


def volume(name: str, attached_here: bool = False) -> dict:
    return {"name": name, "fstype": "ext4", "size_bytes": MiB, "container": "default", "attached_to": None,
            "attached_here": attached_here, "devices": [{"path": f"/c/{name}.raw", "loop": True, "serial": "s"}]}


@pytest.fixture
def fake(monkeypatch, tmp_path):
    monkeypatch.setattr(driver_module, "boot_id", lambda: "boot-1")
    devices = FakeDevices()
    devices.install(monkeypatch)
    api = FakeApi({"db": volume("db"), "web": volume("web")})
    config = Config(url="http://x", token="t", docker_host="h", volumes_root=tmp_path / "v",
                    state_file=tmp_path / "state.json")
    return VolumeDriver(config, api), api, devices, config


def test_mounts_are_counted_per_caller(fake):
    driver, api, devices, config = fake
    first = driver.handle("/VolumeDriver.Mount", {"Name": "db", "ID": "c1"})["Mountpoint"]
    assert driver.handle("/VolumeDriver.Mount", {"Name": "db", "ID": "c2"})["Mountpoint"] == first
    assert api.changes() == ["volumes/db/attach/"] and devices.formatted == 1
    assert State.load(config.state_file).volumes["db"].callers == ["c1", "c2"]
    driver.handle("/VolumeDriver.Unmount", {"Name": "db", "ID": "c1"})
    assert first in devices.mounted and api.changes() == ["volumes/db/attach/"]
    driver.handle("/VolumeDriver.Unmount", {"Name": "db", "ID": "c2"})
    assert devices.mounted == {} and devices.loops == set()
    assert api.changes() == ["volumes/db/attach/", "volumes/db/detach/"]
    assert State.load(config.state_file).volumes == {}
    driver.handle("/VolumeDriver.Mount", {"Name": "db", "ID": "c3"})
    assert devices.formatted == 1  # blkid found the filesystem made the first time: it is kept


def test_volumes_mount_in_parallel_and_all_reach_the_state_file(fake):
    driver, api, _, config = fake
    names = [f"vol{n}" for n in range(20)]
    api.volumes.update({name: volume(name) for name in names})
    threads = [threading.Thread(target=driver.handle, args=("/VolumeDriver.Mount", {"Name": name, "ID": "c"}))
               for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(State.load(config.state_file).volumes) == sorted(names)


def test_inside_a_vm_the_disk_is_found_by_its_serial(fake):
    driver, api, devices, config = fake
    api.volumes["db"]["devices"] = [{"path": "/dev/disk/by-id/virtio-fvg123", "loop": False, "serial": "fvg123"}]
    driver.handle("/VolumeDriver.Mount", {"Name": "db", "ID": "c1"})
    assert devices.mounted == {str(config.volumes_root / "db"): "/dev/vdb"} and devices.loops == set()
    driver.handle("/VolumeDriver.Unmount", {"Name": "db", "ID": "c1"})
    assert devices.mounted == {} and api.changes()[-1] == "volumes/db/detach/"


def console_down(method, path, deadline, body=None):
    raise ConsoleError("cannot reach the Facet console")


def interrupted_release(fake) -> None:
    """Mount db, then unmount it while the console is down: unmounted here, not yet detached there."""
    driver, api, devices, config = fake
    driver.handle("/VolumeDriver.Mount", {"Name": "db", "ID": "c1"})
    api.change = console_down
    with pytest.raises(ConsoleError):
        driver.handle("/VolumeDriver.Unmount", {"Name": "db", "ID": "c1"})
    del api.change
    assert devices.mounted == {} and State.load(config.state_file).volumes["db"].callers == []


def test_a_mount_after_an_interrupted_release_mounts_again(fake):
    driver, _, devices, config = fake
    interrupted_release(fake)
    driver.handle("/VolumeDriver.Mount", {"Name": "db", "ID": "c2"})
    assert str(config.volumes_root / "db") in devices.mounted


def test_a_remove_after_an_interrupted_release_finishes_it(fake):
    driver, api, _, config = fake
    interrupted_release(fake)
    driver.handle("/VolumeDriver.Remove", {"Name": "db"})
    assert api.changes()[-1] == "volumes/db/detach/" and ("DELETE", "volumes/db/") in api.calls
    assert State.load(config.state_file).volumes == {}


def test_remove_is_refused_while_mounted_here(fake):
    driver, api, _, _ = fake
    driver.handle("/VolumeDriver.Mount", {"Name": "db", "ID": "c1"})
    with pytest.raises(ConsoleError, match="mounted here by 1 container"):
        driver.handle("/VolumeDriver.Remove", {"Name": "db"})


def test_reconcile_after_a_crash(fake, tmp_path):
    driver, api, devices, config = fake
    in_use = Mounted("/dev/old", str(config.volumes_root / "db"), "/c/db.raw", True, "ext4", ["c1"])
    half_released = Mounted("/dev/loop-web", str(config.volumes_root / "web"), "/c/web.raw", True, "ext4", [])
    State(boot_id="boot-1", volumes={"db": in_use, "web": half_released}).save(config.state_file)
    devices.mounted = {half_released.mountpoint: "/dev/loop-web", str(config.volumes_root / "stray"): "/dev/x"}
    api.volumes["orphan"] = volume("orphan", attached_here=True)
    restarted = VolumeDriver(config, api)
    restarted.reconcile()
    assert devices.mounted == {in_use.mountpoint: "/dev/loop-db"}  # in use: mounted again; the rest released
    assert "volumes/web/detach/" in api.changes() and "volumes/orphan/detach/" in api.changes()
    assert list(State.load(config.state_file).volumes) == ["db"]


def test_reconcile_after_a_reboot_forgets_the_callers(fake):
    driver, api, devices, config = fake
    used = Mounted("/dev/loop-db", str(config.volumes_root / "db"), "/c/db.raw", True, "ext4", ["c1"])
    State(boot_id="boot-0", volumes={"db": used}).save(config.state_file)
    VolumeDriver(config, api).reconcile()
    assert devices.mounted == {} and api.changes() == ["volumes/db/detach/"]
    assert State.load(config.state_file) == State(boot_id="boot-1")


def test_the_socket_is_private_and_answers_docker(fake, tmp_path):
    driver, _, _, _ = fake
    path = tmp_path / "plugins" / "facet.sock"
    server = daemon.Server(path, driver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert post(path, "/VolumeDriver.Capabilities", b"{}") == {"Err": "", "Capabilities": {"Scope": "global"}}
        assert post(path, "/Plugin.Activate", b"") == {"Err": "", "Implements": ["VolumeDriver"]}
        answer = post(path, "/VolumeDriver.Create", json.dumps({"Name": "xy", "Opts": {"size": "big"}}).encode())
        assert "not a size" in answer["Err"]
        assert "bad volume name" in post(path, "/VolumeDriver.Mount", b'{"Name": "a b", "ID": "1"}')["Err"]
    finally:
        server.shutdown()
        server.server_close()


def post(path: Path, endpoint: str, body: bytes) -> dict:
    class UnixConnection(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(str(path))

    connection = UnixConnection("plugin", timeout=10)
    connection.request("POST", endpoint, body, {"Content-Type": protocol.CONTENT_TYPE})
    answer = json.loads(connection.getresponse().read())
    connection.close()
    return answer

"""The plugin on its own: request checking, options, the state file, deadlines against a broken console, the
socket, and the driver's mount counting and reconcile with the devices and the console stubbed out."""

import contextlib
import http.client
import json
import os
import shutil
import socket
import stat
import subprocess
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from containers.plugin import __main__ as daemon
from containers.plugin import devices, protocol
from containers.plugin import driver as driver_module
from containers.plugin.config import Config, ConfigError
from containers.plugin.driver import VolumeDriver
from containers.plugin.facet_api import ConsoleError, ConsoleUnreachable, Deadline, FacetApi
from containers.plugin.state import Mounted, State, StateUnreadable
from tests.realparts import wait_for

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
    assert config.socket == Path("/run/docker/plugins/facet.sock") and config.report_seconds == 10.0
    assert config.hold_seconds == 60.0
    with pytest.raises(ConfigError, match="FACET_REPORT_SECONDS must be a number of seconds above 0, not 'often'"):
        Config.from_environment({"FACET_URL": "http://x", "FACET_TOKEN": "t", "FACET_DOCKER_HOST": "h",
                                 "FACET_REPORT_SECONDS": "often"})
    with pytest.raises(ConfigError, match="FACET_HOLD_SECONDS must be a number of seconds of 0 or more, not '-1'"):
        Config.from_environment({"FACET_URL": "http://x", "FACET_TOKEN": "t", "FACET_DOCKER_HOST": "h",
                                 "FACET_HOLD_SECONDS": "-1"})


def test_state_file_is_replaced_whole_and_private(tmp_path):
    path = tmp_path / "state" / "plugin.json"
    state = State(boot_id="b1", volumes={"v": Mounted("/dev/loop3", "/m/v", "/c/d.raw", True, "ext4", ["id1"])})
    state.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and list(path.parent.iterdir()) == [path]
    assert State.load(path) == state
    assert State.load(tmp_path / "absent.json") == State()


@pytest.mark.parametrize("left", ["", '{"volumes": {"v": {"device": "/dev/lo', "[1, 2]", '{"volumes": {"v": {}}}'])
def test_a_state_file_that_cannot_be_read_is_said_so(tmp_path, left):
    path = tmp_path / "plugin.json"
    path.write_text(left)
    with pytest.raises(StateUnreadable, match="is unreadable"):
        State.load(path)


def test_fields_of_a_newer_plugin_in_the_state_file_are_left_alone(tmp_path):
    path = tmp_path / "plugin.json"
    path.write_text(json.dumps({"volumes": {"v": {"device": "/dev/loop3", "mountpoint": "/m/v", "disk": "/c/d.raw",
                                                  "loop": True, "fstype": "ext4", "callers": ["id1"],
                                                  "future": 1}}}))
    assert State.load(path).volumes["v"].callers == ["id1"]


@pytest.fixture
def silent_console():
    """A console that accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    held = []

    def hold_connections() -> None:
        with contextlib.suppress(OSError):  # the listener closed: the test is over
            while True:
                held.append(listener.accept()[0])

    threading.Thread(target=hold_connections, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()
    for connection in held:
        connection.close()


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
    """The console as the driver sees it: volumes by name, attachments to 'here', every call recorded; `down`
    makes it unreachable."""

    def __init__(self, volumes: dict[str, dict]) -> None:
        self.volumes = volumes
        self.calls: list[tuple[str, str]] = []
        self.down = False

    def call(self, method, path, deadline, body=None):
        if self.down:
            raise ConsoleUnreachable("cannot reach the Facet console")
        self.calls.append((method, path))
        if path == "volumes/":
            return list(self.volumes.values())
        if path == "usage/":
            return {"volumes": [self.volumes[report["name"]] for report in body["volumes"]]}
        return self.volumes[path.split("/")[1]]

    def change(self, method, path, deadline, body=None):
        if self.down:
            raise ConsoleUnreachable("cannot reach the Facet console")
        self.calls.append((method, path))
        name = path.split("/")[1]
        if path == "volumes/":  # a create, attached here when asked, as the console does for a registered machine
            name = body["name"]
            self.volumes[name] = volume(name, attached_here=body.get("attach", False))
        if path.endswith("/attach/"):
            self.volumes[name]["attached_here"] = True
        if path.endswith("/detach/"):
            self.volumes[name]["attached_here"] = False
        return {"kind": "volume-group.x", "status": "succeeded", "volume": self.volumes.get(name)}

    def changes(self) -> list[str]:
        return [path for method, path in self.calls if path.endswith(("attach/", "detach/"))]


class FakeDevices:
    def __init__(self) -> None:
        self.mounted: dict[str, str] = {}
        self.filesystems: set[str] = set()
        self.formatted = 0
        self.fitted: list[tuple[str, int]] = []

    def install(self, monkeypatch) -> None:
        for name in ("disk_file", "detach_loops", "filesystem_of", "filesystem_size", "fit", "grow_unmounted",
                     "make_filesystem", "mount", "unmount", "mounts_under", "release_stray", "used_bytes",
                     "wait_for_disk"):
            monkeypatch.setattr(driver_module.devices, name, getattr(self, name))

    def disk_file(self, path):
        return str(path)

    def detach_loops(self, file):
        pass

    def wait_for_disk(self, path):
        return "/dev/vdb"

    def filesystem_of(self, source):
        return "ext4" if source in self.filesystems else ""

    def filesystem_size(self, source, fstype):
        return MiB

    def grow_unmounted(self, source, fstype, filesystem_bytes):
        return filesystem_bytes

    def fit(self, device, disk, loop, mountpoint, fstype, filesystem_bytes):
        self.fitted.append((str(mountpoint), filesystem_bytes))

    def make_filesystem(self, source, fstype, label):
        self.formatted += 1
        self.filesystems.add(source)

    def mount(self, source, mountpoint, loop):
        self.mounted[str(mountpoint)] = source
        return source

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
            "attached_here": attached_here,
            "devices": [{"path": f"/c/{name}.raw", "loop": True, "serial": "s", "size_bytes": MiB}]}


@pytest.fixture
def fake(monkeypatch, tmp_path):
    monkeypatch.setattr(driver_module, "boot_id", lambda: "boot-1")
    devices = FakeDevices()
    devices.install(monkeypatch)
    api = FakeApi({"db": volume("db"), "web": volume("web")})
    config = Config(url="http://x", token="t", docker_host="h", volumes_root=tmp_path / "v",
                    state_file=tmp_path / "state.json")
    yield VolumeDriver(config, api), api, devices, config
    # A volume created here is made ready by a thread of its own, which must not outlive its test's fakes.
    wait_for(lambda: not [t for t in threading.enumerate() if t.name.startswith("prepare-")], 5, "prepare threads")


def test_mounts_are_counted_per_caller(fake):
    driver, api, devices, config = fake
    first = driver.handle("/VolumeDriver.Mount", {"Name": "db", "ID": "c1"})["Mountpoint"]
    assert driver.handle("/VolumeDriver.Mount", {"Name": "db", "ID": "c2"})["Mountpoint"] == first
    assert api.changes() == ["volumes/db/attach/"] and devices.formatted == 1
    assert State.load(config.state_file).volumes["db"].callers == ["c1", "c2"]
    driver.handle("/VolumeDriver.Unmount", {"Name": "db", "ID": "c1"})
    assert first in devices.mounted and api.changes() == ["volumes/db/attach/"]
    driver.handle("/VolumeDriver.Unmount", {"Name": "db", "ID": "c2"})
    assert devices.mounted == {}
    assert State.load(config.state_file).detaches == {"db": 4096}  # for the upkeep to tell the console
    assert driver.send_detaches()
    assert api.changes() == ["volumes/db/attach/", "volumes/db/detach/"]
    assert State.load(config.state_file) == State(boot_id="", volumes={}, detaches={})
    driver.handle("/VolumeDriver.Mount", {"Name": "db", "ID": "c3"})
    assert devices.formatted == 1  # the filesystem made the first time is found and kept


def test_a_volume_created_here_is_mounted_without_asking_the_console_again(fake):
    driver, api, devices, config = fake
    driver.handle("/VolumeDriver.Create", {"Name": "fresh", "Opts": {"size": "1M"}})
    assert State.load(config.state_file).volumes["fresh"].held_until > time.monotonic()
    # Made ready while Docker goes on; no container's yet.
    wait_for(lambda: devices.mounted, 5, "the volume made ready ahead of its Mount")
    assert driver.handle("/VolumeDriver.Path", {"Name": "fresh"})["Mountpoint"] == ""
    calls = len(api.calls)
    point = driver.handle("/VolumeDriver.Mount", {"Name": "fresh", "ID": "c1"})["Mountpoint"]
    assert len(api.calls) == calls and devices.mounted == {point: "/c/fresh.raw"} and devices.formatted == 1
    assert driver.handle("/VolumeDriver.Path", {"Name": "fresh"})["Mountpoint"] == point
    driver.handle("/VolumeDriver.Unmount", {"Name": "fresh", "ID": "c1"})
    assert driver.send_detaches() and api.changes() == ["volumes/fresh/detach/"]
    driver.handle("/VolumeDriver.Mount", {"Name": "fresh", "ID": "c2"})  # no longer held: attached again
    assert api.changes()[-1] == "volumes/fresh/attach/"


def test_a_disk_file_gone_after_its_volume_was_made_ready_fails_the_mount(fake, monkeypatch):
    driver, api, devices, _ = fake
    driver.handle("/VolumeDriver.Create", {"Name": "gone", "Opts": {}})
    wait_for(lambda: devices.mounted, 5, "the volume made ready ahead of its Mount")

    def missing(path):
        raise driver_module.devices.DeviceError(f"disk file {path} is missing")
    monkeypatch.setattr(driver_module.devices, "disk_file", missing)
    with pytest.raises(driver_module.devices.DeviceError, match="is missing"):
        driver.handle("/VolumeDriver.Mount", {"Name": "gone", "ID": "c1"})
    assert devices.mounted == {} and driver.state.volumes == {} and "gone" in driver.state.detaches


def held_past_its_time(driver: VolumeDriver, name: str) -> None:
    driver.handle("/VolumeDriver.Create", {"Name": name, "Opts": {}})
    driver.release_expired_holds()
    assert name in driver.state.volumes  # not yet
    wait_for(lambda: driver.state.volumes[name].device, 5, "the volume made ready ahead of its Mount")
    driver.state.volumes[name].held_until = time.monotonic() - 1


def test_a_volume_created_here_that_no_container_mounts_is_released(fake):
    driver, api, devices, config = fake
    held_past_its_time(driver, "idle")
    driver.upkeep._step()  # as the upkeep thread does, within a report period of the hold's end
    assert State.load(config.state_file).volumes == {} and devices.mounted == {}
    assert api.changes() == ["volumes/idle/detach/"]


def test_a_hold_that_cannot_be_released_yet_does_not_stop_the_upkeep(fake, monkeypatch):
    driver, api, devices, _ = fake
    held_past_its_time(driver, "busy")
    driver.state.detaches["other"] = None  # released earlier; the console is still to hear of it
    api.volumes["other"] = volume("other", attached_here=True)

    def in_use(mountpoint):
        raise driver_module.devices.DeviceError(f"umount {mountpoint}: Device or resource busy")
    monkeypatch.setattr(driver_module.devices, "unmount", in_use)
    driver.upkeep._step()
    assert "busy" in driver.state.volumes and api.changes() == ["volumes/other/detach/"]  # tried again later


def test_a_held_volume_taken_away_in_the_console_is_let_go_without_a_detach(fake):
    driver, api, devices, _ = fake
    driver.handle("/VolumeDriver.Create", {"Name": "moved", "Opts": {}})
    wait_for(lambda: devices.mounted, 5, "the volume made ready ahead of its Mount")
    api.volumes["moved"]["attached_here"] = False  # an Admin moved it by force
    driver.report()
    assert driver.state.volumes == {} and devices.mounted == {} and driver.state.detaches == {}


def test_a_create_the_console_did_not_answer_in_time_is_told_to_let_go(fake):
    driver, api, _, _ = fake
    api.down = True
    with pytest.raises(ConsoleUnreachable):
        driver.handle("/VolumeDriver.Create", {"Name": "late", "Opts": {}})
    assert driver.state.detaches == {"late": None}  # it may have been made, attached here, after our deadline
    api.down = False
    driver.handle("/VolumeDriver.Create", {"Name": "late", "Opts": {}})  # Docker's retry: held here after all
    assert driver.state.detaches == {} and driver.state.volumes["late"].held_until


def test_remove_of_a_held_volume_tells_the_detach_then_deletes(fake):
    driver, api, devices, _ = fake
    driver.handle("/VolumeDriver.Create", {"Name": "brief", "Opts": {}})
    driver.handle("/VolumeDriver.Remove", {"Name": "brief"})
    assert [path for _, path in api.calls][-2:] == ["volumes/brief/detach/", "volumes/brief/"]
    assert devices.mounted == {} and driver.state.volumes == {}


def test_an_unreadable_state_file_is_taken_as_empty_only_where_nothing_is_mounted(fake):
    driver, api, devices, config = fake
    config.state_file.write_text("{")
    assert VolumeDriver(config, api).state == State()
    devices.mounted[str(config.volumes_root / "db")] = "/dev/loop3"
    with pytest.raises(StateUnreadable, match=r"volumes are mounted under .* \(db\): stop the containers"):
        VolumeDriver(config, api)


def test_with_no_hold_a_create_attaches_nothing(fake):
    driver, api, _, config = fake
    driver = VolumeDriver(replace(config, hold_seconds=0), api)
    driver.handle("/VolumeDriver.Create", {"Name": "swarm", "Opts": {}})
    assert driver.state.volumes == {} and api.volumes["swarm"]["attached_here"] is False


def test_a_restart_releases_a_volume_held_for_a_mount(fake):
    driver, api, devices, config = fake
    driver.handle("/VolumeDriver.Create", {"Name": "held", "Opts": {}})
    wait_for(lambda: devices.mounted, 5, "the volume made ready ahead of its Mount")
    restarted = VolumeDriver(config, api)
    restarted.reconcile()
    assert restarted.state.volumes == {} and api.changes() == ["volumes/held/detach/"] and devices.mounted == {}


def test_get_asks_the_console_only_for_what_it_has_not_just_said(fake, monkeypatch):
    driver, api, _, _ = fake
    driver.handle("/VolumeDriver.Get", {"Name": "db"})
    driver.handle("/VolumeDriver.Get", {"Name": "db"})
    assert api.calls == [("GET", "volumes/db/")]
    monkeypatch.setattr(driver_module, "DESCRIPTION_SECONDS", 0.0)
    driver.handle("/VolumeDriver.Get", {"Name": "db"})
    assert len(api.calls) == 2
    driver.handle("/VolumeDriver.Mount", {"Name": "db", "ID": "c1"})
    driver.handle("/VolumeDriver.Get", {"Name": "db"})  # mounted here: attached here, known
    assert len(api.calls) == 3


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
    api.volumes["db"]["devices"] = [{"path": "/dev/disk/by-id/virtio-fvg123", "loop": False, "serial": "fvg123",
                                     "size_bytes": MiB}]
    driver.handle("/VolumeDriver.Mount", {"Name": "db", "ID": "c1"})
    assert devices.mounted == {str(config.volumes_root / "db"): "/dev/vdb"}
    driver.handle("/VolumeDriver.Unmount", {"Name": "db", "ID": "c1"})
    driver.send_detaches()
    assert devices.mounted == {} and api.changes()[-1] == "volumes/db/detach/"


def test_an_unmount_while_the_console_is_down_detaches_when_it_is_back(fake):
    driver, api, devices, config = fake
    driver.handle("/VolumeDriver.Mount", {"Name": "db", "ID": "c1"})
    api.down = True
    driver.handle("/VolumeDriver.Unmount", {"Name": "db", "ID": "c1"})  # Docker hears success: it is unmounted
    assert devices.mounted == {} and not driver.send_detaches()
    assert State.load(config.state_file).detaches == {"db": 4096}  # kept across a restart
    api.down = False
    assert VolumeDriver(config, api).send_detaches()
    assert api.changes()[-1] == "volumes/db/detach/" and State.load(config.state_file).detaches == {}


def test_a_mount_takes_back_a_detach_not_yet_told(fake):
    driver, api, devices, config = fake
    driver.handle("/VolumeDriver.Mount", {"Name": "db", "ID": "c1"})
    api.down = True
    driver.handle("/VolumeDriver.Unmount", {"Name": "db", "ID": "c1"})
    api.down = False
    driver.handle("/VolumeDriver.Mount", {"Name": "db", "ID": "c2"})
    assert driver.send_detaches() and api.changes()[-1] == "volumes/db/attach/"
    assert str(config.volumes_root / "db") in devices.mounted


def test_a_remove_tells_the_console_of_the_detach_first(fake):
    driver, api, _, config = fake
    driver.handle("/VolumeDriver.Mount", {"Name": "db", "ID": "c1"})
    api.down = True
    driver.handle("/VolumeDriver.Unmount", {"Name": "db", "ID": "c1"})
    with pytest.raises(ConsoleError, match="cannot reach"):
        driver.handle("/VolumeDriver.Remove", {"Name": "db"})
    api.down = False
    driver.handle("/VolumeDriver.Remove", {"Name": "db"})
    assert api.calls[-2:] == [("POST", "volumes/db/detach/"), ("DELETE", "volumes/db/")]
    assert State.load(config.state_file).detaches == {}


def test_a_refused_detach_is_dropped(fake):
    driver, api, _, config = fake
    driver.handle("/VolumeDriver.Mount", {"Name": "db", "ID": "c1"})
    driver.handle("/VolumeDriver.Unmount", {"Name": "db", "ID": "c1"})

    def refuse(*args, **kwargs):
        raise ConsoleError("the Facet console refused POST volumes/db/detach/: attached to Docker host dh-2")

    api.change = refuse
    assert driver.send_detaches() and State.load(config.state_file).detaches == {}


def test_remove_is_refused_while_mounted_here(fake):
    driver, api, _, _ = fake
    driver.handle("/VolumeDriver.Mount", {"Name": "db", "ID": "c1"})
    with pytest.raises(ConsoleError, match="mounted here by 1 container"):
        driver.handle("/VolumeDriver.Remove", {"Name": "db"})


def test_a_report_learns_of_a_grown_disk_and_grows_the_filesystem(fake):
    driver, api, devices, config = fake
    driver.handle("/VolumeDriver.Mount", {"Name": "db", "ID": "c1"})
    mountpoint = str(config.volumes_root / "db")
    assert devices.fitted == [(mountpoint, MiB)]  # at mount: a disk grown while detached is filled
    driver.report()
    assert devices.fitted == [(mountpoint, MiB)]  # the same size: nothing to do
    api.volumes["db"]["devices"][0]["size_bytes"] = 2 * MiB
    driver.report()
    assert devices.fitted[-1] == (mountpoint, MiB)
    assert State.load(config.state_file).volumes["db"].size_bytes == 2 * MiB
    assert ("POST", "usage/") in api.calls


def test_reconcile_after_a_crash(fake, tmp_path):
    driver, api, devices, config = fake
    in_use = Mounted("/dev/old", str(config.volumes_root / "db"), "/c/db.raw", True, "ext4", ["c1"])
    half_released = Mounted("/dev/loop-web", str(config.volumes_root / "web"), "/c/web.raw", True, "ext4", [])
    State(boot_id="boot-1", volumes={"db": in_use, "web": half_released}).save(config.state_file)
    devices.mounted = {half_released.mountpoint: "/dev/loop-web", str(config.volumes_root / "stray"): "/dev/x"}
    api.volumes["orphan"] = volume("orphan", attached_here=True)
    restarted = VolumeDriver(config, api)
    restarted.reconcile()
    assert devices.mounted == {in_use.mountpoint: "/c/db.raw"}  # in use: mounted again; the rest released
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


@pytest.mark.parametrize(("fstype", "size"), [("ext4", 64 * MiB), ("xfs", 300 * MiB)])
def test_the_filesystem_size_is_read_from_its_superblock(tmp_path, fstype, size):
    if not shutil.which(f"mkfs.{fstype}"):
        pytest.skip(f"mkfs.{fstype} is not installed")
    disk = tmp_path / "disk.raw"
    disk.touch()
    os.truncate(disk, size)
    assert devices.filesystem_of(str(disk)) == ""  # nothing written yet: no blkid needed to say so
    devices.make_filesystem(str(disk), fstype, "t")
    assert devices.filesystem_of(str(disk)) == fstype
    assert devices.filesystem_size(str(disk), fstype) == size
    assert devices.filesystem_size(str(disk), "xfs" if fstype == "ext4" else "ext4") == 0
    os.truncate(disk, 2 * size)
    grown = devices.grow_unmounted(str(disk), fstype, size)
    if fstype == "ext4":  # offline, as at the next mount
        assert grown == devices.filesystem_size(str(disk), fstype) == 2 * size
    else:
        assert grown == size  # xfs grows only mounted


class CountingHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    connections: list[int] = []

    def setup(self) -> None:
        super().setup()
        self.connections.append(1)

    def do_GET(self) -> None:
        body = json.dumps({"path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if "close" in self.path:  # as a console closes a connection it found idle, without a word
            self.close_connection = True

    def log_message(self, *args) -> None:
        pass


def test_calls_share_kept_alive_connections_and_survive_their_closing():
    CountingHandler.connections = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), CountingHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        api = FacetApi(f"http://127.0.0.1:{server.server_port}", "key")
        assert api.call("GET", "a/", Deadline(5)) == {"path": "/api/v1/docker-host/a/"}
        api.call("GET", "b/close", Deadline(5))
        assert len(CountingHandler.connections) == 1
        assert api.call("GET", "c/", Deadline(5)) == {"path": "/api/v1/docker-host/c/"}  # sent again, new connection
        assert len(CountingHandler.connections) == 2
        other = threading.Thread(target=api.call, args=("GET", "d/", Deadline(5)))  # Docker's next request
        other.start()
        other.join()
        assert len(CountingHandler.connections) == 2
        api.close()
    finally:
        server.shutdown()
        server.server_close()


def test_a_mount_refused_while_the_detach_is_under_way_says_so_and_keeps_the_detach(fake, tmp_path):
    driver, api, devices, config = fake
    driver.handle("/VolumeDriver.Mount", {"Name": "db", "ID": "c1"})
    driver.handle("/VolumeDriver.Unmount", {"Name": "db", "ID": "c1"})
    told = api.change

    def worker_busy(method, path, deadline, body=None):  # the detach task waits for the host's worker
        if path.endswith("/detach/"):
            raise ConsoleUnreachable("the Facet console did not finish task volume-group.detach within 20 s")
        raise ConsoleError("the Facet console refused POST volumes/db/attach/: volume_group: volume group db is "
                           "being detached from Docker host h; try again once that detach has finished")

    api.change = worker_busy
    assert not driver.send_detaches()
    path = tmp_path / "plugins" / "facet.sock"
    server = daemon.Server(path, driver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        answer = post(path, "/VolumeDriver.Mount", b'{"Name": "db", "ID": "c2"}')
    finally:
        server.shutdown()
        server.server_close()
    assert "is being detached" in answer["Err"] and "try again" in answer["Err"]
    assert devices.mounted == {} and State.load(config.state_file).detaches == {"db": 4096}
    api.change = told
    assert driver.send_detaches()
    assert driver.handle("/VolumeDriver.Mount", {"Name": "db", "ID": "c2"})["Mountpoint"]


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("losetup"), reason="needs root and losetup")
def test_the_filesystem_on_a_block_device_is_found(tmp_path):
    """Inside a VM the source is a block device, whose blocks always count 0: a filesystem on it must be found,
    or every Mount would make a new one over the data."""
    disk = tmp_path / "disk.raw"
    disk.touch()
    os.truncate(disk, 64 * MiB)
    devices.make_filesystem(str(disk), "ext4", "t")
    try:
        device = devices.run("losetup", "--find", "--show", str(disk))
    except devices.DeviceError as exc:
        pytest.skip(f"no loop device: {exc}")
    try:
        assert os.stat(device).st_blocks == 0 and devices.filesystem_of(device) == "ext4"
    finally:
        subprocess.run(["losetup", "--detach", device], capture_output=True)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("losetup"), reason="needs root and losetup")
def test_leftover_loop_devices_are_found_through_a_symlinked_directory(tmp_path):
    (tmp_path / "real").mkdir()
    disk = tmp_path / "real" / "disk0.raw"
    disk.write_bytes(b"\0" * MiB)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    try:
        device = devices.run("losetup", "--find", "--show", str(disk))
    except devices.DeviceError as exc:
        pytest.skip(f"no loop device: {exc}")
    try:
        assert devices.loops_of(tmp_path / "link" / "disk0.raw") == [device]
        devices.detach_loops(tmp_path / "link" / "disk0.raw")
        assert devices.loops_of(disk) == []
    finally:
        subprocess.run(["losetup", "--detach", device], capture_output=True)

"""Fault loops (issue 14, "Proof, in CI"): the real processes of an installation (redis-server, a Celery worker
and beat, gunicorn, a Guest Tools Service instance, simulated guests running the real agent, and the volume
plugin spoken to over its socket, as dockerd would) SIGKILLed at random points of a loop of clones, Guest Tools
mounts and volume group attaches, and started again. Afterwards:

- no task stays queued or running past the reaper's time: what a kill interrupted is requeued and finishes;
- every clone asked for exists exactly once (a request the killed web tier may or may not have committed is
  asked again, as a client would);
- no orphan file: every file of the storage container belongs to a row (disks, tools ISOs, customization
  media), no `.part` file;
- nothing is attached or mounted that the console does not show: volume group attachments are exactly the sim
  hypervisor's disks of each VM and what the plugin holds (its state file, and the mounts of its namespace);
  every CD-ROM of a VM is the hypervisor's.

Bounded and reproducible: ROUNDS rounds, one kill each, every part killed as often as the others; the points
(what runs, how long after it started the kill lands, which part) come from one seed, FACET_FAULT_SEED (printed
on failure; default 14). Processes are killed with their process group and are all stopped at the end, failed
or not (tests/realparts.py `celery_processes`)."""

import http.client
import json
import os
import random
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from console.core import access
from console.core.actors import Actor
from console.core.models import SimDomain, Task
from console.models import VM, CdRom, Host
from console.services import processes
from containers.models import VolumeGroup, VolumeGroupAttachment
from containers.services import docker_hosts
from customization.models import VMCustomization
from ngt.daemon import commands
from ngt.models import GuestTools
from ngt.services.sweep import sweep_tools_isos
from tests.containers.realdocker import Namespace, Plugin, missing_parts, release_devices, short_tempdir
from tests.ngt import test_daemon
from tests.ngt.test_agent import REPOSITORY, free_vip
from tests.realparts import free_port, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
MiB = 1024**2
SEED = int(os.environ.get("FACET_FAULT_SEED", "14"))
PARTS = ("worker", "beat", "web", "guest-tools", "plugin")
KILLS_EACH = 2
CLONES = 16
ENV = {"FACET_TASK_MAX_ATTEMPTS": "10"}  # a task may be hit by several kills; it must still finish
SWEEP_GRACE_SECONDS = 5  # beat's sweep of tools ISOs keeps younger files (600 s as shipped)
short_data_dir = test_daemon.short_data_dir  # the fixture: the sim guests' channel sockets need short paths
CLOUD_CONFIG = "#cloud-config\nwrite_files:\n  - path: /etc/motd\n    content: made in a fault loop\n"


class Plugged:
    """The volume plugin's socket, spoken to as dockerd speaks to it (one HTTP POST per request)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def call(self, endpoint: str, **body) -> dict:
        connection = http.client.HTTPConnection("localhost", timeout=60)
        connection.sock = socket.socket(socket.AF_UNIX)
        connection.sock.settimeout(60)
        try:
            connection.sock.connect(str(self.path))
            connection.request("POST", f"/VolumeDriver.{endpoint}", body=json.dumps(body),
                               headers={"Content-Type": "application/json"})
            return json.loads(connection.getresponse().read() or b"{}")
        except (OSError, http.client.HTTPException, ValueError) as exc:
            return {"Err": f"no answer: {exc}"}
        finally:
            connection.close()


class Installation:
    """The parts, each started again after a kill; the console's URL and an Admin's token."""

    def __init__(self, celery_processes, plugin: Plugin, host: Host) -> None:
        self.processes = celery_processes
        self.plugin = plugin
        self.host = host
        self.running: dict[str, object] = {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.kills: list[str] = []

    def start(self, part: str) -> None:
        if part == "worker":
            self.running[part] = self.processes.worker(**ENV)
        elif part == "beat":
            self.running[part] = self.processes.beat(**ENV)
        elif part == "web":  # on the same port each time, as an installation's proxy and plugins expect
            self.running[part] = self.processes.start("web", processes.web_command(self.port, workers=1),
                                                      "Booting worker", **ENV)
        elif part == "guest-tools":
            command = processes.guest_tools_service_command(self.host.name) + f" --address {free_vip()}"
            self.running[part] = self.processes.start("guest-tools", command, "listening on", **ENV)
        elif part == "plugin":
            self.plugin.env["FACET_URL"] = self.url
            self.plugin.start()
        elif part == "sim-guests":
            self.running[part] = self.processes.start(
                "sim-guests", f"{sys.executable} {REPOSITORY / 'manage.py'} sim_guests --host {self.host.name} "
                "--interval 0.5", None, **ENV)

    def kill(self, part: str) -> None:
        if part == "plugin":
            self.plugin.kill()
        else:
            self.processes.kill(self.running[part])


def api(installation: Installation, key: str, method: str, path: str, body: dict | None = None,
        deadline: float = 60) -> requests.Response | None:
    """A request as a client makes it: asked again while the web tier is down (connection refused or cut)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            answer = requests.request(method, f"{installation.url}/api/v1/{path}", json=body, timeout=30,
                                      headers={"Authorization": f"Token {key}"})
        except requests.RequestException:
            time.sleep(0.3)
            continue
        if answer.status_code < 500:
            return answer
        time.sleep(0.3)
    return None


@pytest.fixture
def plugin_world(cluster, actor):
    """A private mount namespace for the plugin's mounts, and a registered Docker host for it."""
    reason = missing_parts()
    if reason:
        pytest.skip(reason)
    root = short_tempdir("facet-fl-")
    (root / "plugins").mkdir()
    (root / "p").mkdir()
    namespace = Namespace(root / "plugins")
    host, key = docker_hosts.register(actor, "dh-1", address="127.0.0.1")
    plugin = Plugin(namespace, root / "p", {"FACET_TOKEN": key, "FACET_DOCKER_HOST": host.name,
                                            "FACET_DEFAULT_CONTAINER": "default", "FACET_REPORT_SECONDS": "1",
                                            "FACET_CALL_SECONDS": "10"})
    yield plugin, namespace, host
    plugin.kill()
    release_devices(namespace, root / "p" / "volumes", cluster.storage_containers.get().resolve(""))
    namespace.close()


def source_vm(installation: Installation, key: str) -> VM:
    """A VM with Guest Tools enabled and a small disk, on the slow host: its clones get a tools ISO each."""
    answer = api(installation, key, "POST", "vms/", {"name": "golden", "vcpus": 1, "memory_bytes": 64 * MiB,
                                                     "host": str(installation.host.uuid),
                                                     "disks": [{"size_bytes": MiB}]})
    assert answer is not None and answer.status_code == 202, answer and answer.text
    wait_for(lambda: Task.objects.get(uuid=answer.json()["uuid"]).ended, 60, "the source's create")
    source = VM.objects.get(name="golden")
    answer = api(installation, key, "POST", f"vms/{source.uuid}/guest-tools/enable/")
    assert answer is not None and answer.status_code == 202, answer and answer.text
    wait_for(lambda: GuestTools.objects.filter(vm=source, enabled=True).exists(), 60, "Guest Tools enabled")
    return source


class Traffic:
    """Clones, remounts, Docker volumes and a volume group's attach and detach, asked for without pause (each
    loop bounded in count) while parts are killed under them; records what was asked for."""

    def __init__(self, installation: Installation, key: str, source: VM, plugged: Plugged, rng: random.Random):
        self.installation = installation
        self.key = key
        self.source = source
        self.plugged = plugged
        self.rng = random.Random(rng.random())  # its own: the threads draw from it in no fixed order
        self.stop = threading.Event()
        self.clones: list[str] = []
        self.volumes: list[str] = []
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self.loop, args=(action, rounds), daemon=True) for action, rounds in (
            (self.clone, CLONES), (self.remount, 40), (self.docker_volume, 60), (self.attach_or_detach, 40))]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(120)
            assert not thread.is_alive(), "a traffic loop did not end"

    def loop(self, action, rounds: int) -> None:
        for n in range(rounds):
            if self.stop.is_set():
                return
            action(n)
            self.stop.wait(0.3)

    def asked(self, what: str, answer: requests.Response | None, *expected: int) -> None:
        if answer is None:
            self.errors.append(f"{what}: no answer in time")
        elif answer.status_code not in (202, *expected):
            self.errors.append(f"{what}: {answer.status_code} {answer.text}")

    def clone(self, n: int) -> None:
        name = f"clone-{n:02}"
        self.clones.append(name)
        answer = api(self.installation, self.key, "POST", f"vms/{self.source.uuid}/clone/", {
            "name": name, "power_on": True, "customization": {"content": CLOUD_CONFIG}})
        # 409: a first try the killed web tier committed (its answer lost) made the name taken.
        self.asked(f"clone {name}", answer, 409)

    def remount(self, n: int) -> None:
        clone = VM.objects.filter(parent=self.source, guest_tools__enabled=True).order_by("?").first()
        if clone is not None:  # 409, 423: a Guest Tools task, or another change of the VM, is still on it
            answer = api(self.installation, self.key, "POST", f"vms/{clone.uuid}/guest-tools/mount/",
                         {"config_only": True})
            self.asked(f"mount {clone.name}", answer, 409, 423)

    def docker_volume(self, n: int) -> None:
        """Create and mount, as `docker run -v` does; on three rounds of four, unmount and remove too. The
        plugin or the console may be down at any step: Docker shows the error, and the next round goes on."""
        name = f"vol-{n:02}"
        self.volumes.append(name)
        self.plugged.call("Create", Name=name, Opts={"size": "8M"})
        self.plugged.call("Mount", Name=name, ID=f"c{n}")
        if n % 4:
            self.plugged.call("Unmount", Name=name, ID=f"c{n}")
            self.plugged.call("Remove", Name=name)

    def attach_or_detach(self, n: int) -> None:
        group = VolumeGroup.objects.filter(name="shared").first()
        clone = VM.objects.filter(parent=self.source).order_by("?").first()
        if group is None or clone is None:
            return
        attached = VolumeGroupAttachment.objects.filter(group=group).exists()
        action, body = ("detach", {}) if attached else ("attach", {"vm": str(clone.uuid)})
        answer = api(self.installation, self.key, "POST", f"volume-groups/{group.uuid}/{action}/", body)
        self.asked(f"{action} shared", answer, 409, 423)  # the previous change, or the VM's, is still under way


def quiet(timeout: float) -> None:
    """Every task ended; a task killed mid-run is requeued by the reaper (FACET_TASK_STALE_SECONDS, 3 s here)."""
    def ended() -> bool:
        return not Task.objects.exclude(status__in=Task.ENDED).exists()

    try:
        wait_for(ended, timeout, "every task to end", interval=0.5)
    except AssertionError:
        left = list(Task.objects.exclude(status__in=Task.ENDED).values_list("kind", "status", "attempts", "message"))
        raise AssertionError(f"tasks still not ended after {timeout} s: {left}") from None


def files_of_rows(storage_container: Path) -> set[Path]:
    """Every file the console's rows name in the storage container."""
    named = set()
    for vm in VM.objects.all():
        named.update(disk.path for disk in vm.disks.all())
    named.update(Path(path) for path in CdRom.objects.exclude(iso_path="").values_list("iso_path", flat=True))
    named.update(Path(path) for path in VMCustomization.objects.exclude(iso_path="").values_list("iso_path",
                                                                                                 flat=True))
    for group in VolumeGroup.objects.all():
        named.update(disk.path for disk in group.disks.all())
    return {path for path in named if path.is_relative_to(storage_container)}


def test_sigkills_at_random_points_of_clone_mount_and_attach_loops_leave_nothing_behind(
        short_data_dir, cluster, actor, admin, celery_processes, plugin_world, redis_url):
    rng = random.Random(SEED)
    plugin, namespace, docker_host = plugin_world
    Host.objects.update(enabled=False)
    host = Host.objects.create(cluster=cluster, name="slow", driver_uri="sim://?delay=0.2", cpus=8,
                               memory_bytes=64 * 1024**3)
    cluster.virtual_ip = free_vip()
    cluster.save()
    commands.redis_client(redis_url).delete(commands.LEASE_KEY)
    installation = Installation(celery_processes, plugin, host)
    for part in ("worker", "beat", "web", "guest-tools", "sim-guests", "plugin"):
        installation.start(part)
    key = access.create_token(Actor(user=admin), admin, "faults")[1]
    storage_container = Path(cluster.storage_containers.get().path)
    source = source_vm(installation, key)
    answer = api(installation, key, "POST", "volume-groups/", {"name": "shared", "size_bytes": 4 * MiB})
    assert answer is not None and answer.status_code == 202, answer and answer.text
    traffic = Traffic(installation, key, source, Plugged(plugin.socket), rng)

    schedule = list(PARTS) * KILLS_EACH
    rng.shuffle(schedule)
    try:
        traffic.start()
        for part in schedule:
            time.sleep(rng.uniform(0.5, 2.5))
            if part == "worker":  # somewhere inside a task, where a kill does harm, if one comes in 10 s
                running = Task.objects.filter(status="running")
                deadline = time.monotonic() + 10
                while not running.exists() and time.monotonic() < deadline:
                    time.sleep(0.05)
                time.sleep(rng.uniform(0, 1.0))
            installation.kill(part)
            installation.kills.append(part)
            time.sleep(rng.uniform(0, 0.5))
            installation.start(part)
        traffic.finish()

        quiet(90)
        assert not traffic.errors, traffic.errors
        check_clones(source, traffic.clones)
        check_files(storage_container)
        check_attachments(plugin, namespace, docker_host)
        check_guest_tools(source)
        print(f"FACET_FAULT_SEED={SEED}: kills {installation.kills}; {len(set(traffic.clones))} clones, "
              f"{len(traffic.volumes)} Docker volumes; requeued: "
              f"{list(Task.objects.filter(attempts__gt=1).values_list('kind', 'attempts'))}; linked: "
              f"{GuestTools.objects.filter(link_active=True).count()}")
    except BaseException:
        print(f"FACET_FAULT_SEED={SEED}; kills: {installation.kills}", file=sys.stderr)
        print(plugin.logs(), file=sys.stderr)
        raise


def check_clones(source: VM, names: list[str]) -> None:
    """Each clone asked for, made once, its clone task succeeded, one hypervisor domain each."""
    clones = list(VM.objects.filter(parent=source))
    assert sorted(vm.name for vm in clones) == sorted(set(names))
    assert SimDomain.objects.filter(uuid__in=[vm.uuid for vm in clones]).count() == len(clones)
    failed = Task.objects.exclude(status="succeeded").values_list("kind", "status", "error")
    assert not failed.filter(kind="vm.clone").exists(), list(failed)
    assert SimDomain.objects.count() == VM.objects.count(), "a domain of no VM"


def check_files(storage_container: Path) -> None:
    """No file of the storage container that no row names, once beat's sweep of tools ISOs has run (as it does
    every 10 minutes; here at once, with a short grace). The sweep's own log says what it removed."""
    time.sleep(SWEEP_GRACE_SECONDS + 1)
    sweep_tools_isos(grace_seconds=SWEEP_GRACE_SECONDS)
    named = files_of_rows(storage_container)
    kept_aside = (".facet-probes", "images")
    stray = sorted(str(path.relative_to(storage_container)) for path in storage_container.rglob("*")
                   if path.is_file() and path not in named
                   and path.relative_to(storage_container).parts[0] not in kept_aside)
    assert not stray, f"files no row names: {stray}"


def check_attachments(plugin: Plugin, namespace: Namespace, docker_host) -> None:
    """What the console shows attached is what the hypervisor and the plugin hold, and nothing more."""
    for vm in VM.objects.all():
        domain = SimDomain.objects.get(uuid=vm.uuid)
        groups = {disk.serial: str(disk.path) for attachment in VolumeGroupAttachment.objects.filter(vm=vm)
                  for disk in attachment.group.disks.all()}
        assert domain.disks == groups, vm.name
        cdroms = {str(cdrom.slot): cdrom.iso_path for cdrom in vm.cdroms.exclude(iso_path="")}
        assert {slot: path for slot, path in domain.cdroms.items() if path} == cdroms, vm.name

    def plugin_agrees() -> bool:
        state = json.loads((plugin.root / "state.json").read_text())
        console = set(VolumeGroupAttachment.objects.filter(docker_host=docker_host).values_list(
            "group__docker_volume", flat=True))
        mounted = {line.split()[4].rsplit("/", 1)[-1] for line in namespace.mounts().splitlines()
                   if line.split()[4].startswith(str(plugin.root / "volumes") + "/")}
        return set(state["volumes"]) == console == mounted and not state["detaches"]

    wait_for(plugin_agrees, 30, "the plugin's state, its mounts and the console to agree")


def check_guest_tools(source: VM) -> None:
    """Every running clone's agent links with its current certificate, whatever was killed meanwhile."""
    running = VM.objects.filter(parent=source, power_state="on", guest_tools__enabled=True)
    wait_for(lambda: all(state.link_active for state in GuestTools.objects.filter(vm__in=running)), 60,
             "every clone's agent to link")

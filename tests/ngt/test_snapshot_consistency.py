"""A snapshot of a running sim VM with the real Guest Tools Service and agent: consistent when the agent
froze the guest, crash-consistent (and why) when the capability is off or the freeze is never answered;
nothing stays frozen. fsfreeze is a logging script here (tests/ngt/test_agent_freeze.py says why)."""

import pytest

from console.core.drivers import files
from console.core.tasks import sending
from console.models import VM, Snapshot, VirtualDisk
from console.services import snapshots
from ngt.services import guest_tools, quiesce
from tests.ngt import test_agent, test_daemon
from tests.ngt.test_agent import extract_media, start_agent, stop
from tests.realparts import wait_for

pytestmark = pytest.mark.slow
service, mounted_vm = test_daemon.service, test_agent.mounted_vm
MiB = 1024**2


@pytest.fixture
def running_vm(mounted_vm, actor, run_tasks, tmp_path, settings, redis_url, monkeypatch):
    """web-1 with a disk, on, Guest Tools remounted with vss-snapshot, and a fake fsfreeze for its agent."""
    vm, _ = mounted_vm
    settings.REDIS_URL = redis_url
    monkeypatch.setattr(sending, "send", lambda task: None)
    storage_container = vm.cluster.storage_containers.get()
    VirtualDisk.objects.create(vm=vm, index=0, size_bytes=8 * MiB, storage_container=storage_container,
                               file_name=f"vms/{vm.uuid}/disk0.raw")
    files.create_sparse(storage_container.resolve(f"vms/{vm.uuid}/disk0.raw"), 8 * MiB)
    from console.core.models import SimDomain
    SimDomain.objects.filter(uuid=vm.uuid).update(power_state="on")
    VM.objects.filter(pk=vm.pk).update(power_state="on")
    guest_tools.set_capabilities(actor, vm, ["vss-snapshot"])
    guest_tools.request_mount(actor, vm)
    run_tasks()
    script = tmp_path / "fsfreeze"
    script.write_text(f"#!/bin/sh\n[ -e {tmp_path}/slow ] && [ \"$1\" = -f ] && sleep 4\n"
                      f"echo \"$1 $2\" >> {tmp_path}/fsfreeze.log\n")
    script.chmod(0o755)
    vm.refresh_from_db()
    return vm, extract_media(vm, tmp_path / "media-vss"), {"fsfreeze-command": str(script),
                                                       "hooks-dir": str(tmp_path / "hooks.d")}


def take(actor, run_tasks, vm, name) -> Snapshot:
    snapshots.request_create(actor, vm, name)
    (task,) = run_tasks()
    assert task.status == "succeeded", task.error
    return Snapshot.objects.get(name=name)


def frozen_and_thawed(tmp_path) -> tuple[int, int]:
    lines = (tmp_path / "fsfreeze.log").read_text().splitlines() if (tmp_path / "fsfreeze.log").exists() else []
    return sum(line.startswith("-f ") for line in lines), sum(line.startswith("-u ") for line in lines)


def test_a_linked_agent_makes_the_snapshot_consistent(service, running_vm, tmp_path, actor, run_tasks):
    vm, media, options = running_vm
    service("host-1", "leading:")
    agent = start_agent(tmp_path, media, **options)
    try:
        wait_for(lambda: guest_tools.state_of(vm).link_active, 20, "the link")
        snapshot = take(actor, run_tasks, vm, "consistent")
        assert snapshot.consistent, snapshot.consistency_note
        assert snapshot.consistency_note.startswith("application-consistent: the agent froze /")
        frozen, thawed = frozen_and_thawed(tmp_path)
        assert frozen >= 1 and frozen == thawed
        assert "guest frozen" in test_agent.agent_log(tmp_path) and "guest thawed" in test_agent.agent_log(tmp_path)

        guest_tools.set_capabilities(actor, vm, [])
        snapshot = take(actor, run_tasks, vm, "capability-off")
        assert (snapshot.consistent, snapshot.consistency_note) == (
            False, "crash-consistent: the vss-snapshot capability is off")
    finally:
        stop(agent)


def test_a_freeze_never_answered_is_crash_consistent_and_thawed(service, running_vm, tmp_path, actor, run_tasks,
                                                               monkeypatch):
    vm, media, options = running_vm
    monkeypatch.setattr(quiesce, "FREEZE_REPLY_SECONDS", 1)
    monkeypatch.setattr(quiesce, "THAW_REPLY_SECONDS", 1)
    monkeypatch.setattr(quiesce, "FREEZE_SECONDS", 3)
    (tmp_path / "slow").touch()  # fsfreeze -f takes 4 s: the console has given up on the freeze by then
    service("host-1", "leading:")
    agent = start_agent(tmp_path, media, **options)
    try:
        wait_for(lambda: guest_tools.state_of(vm).link_active, 20, "the link")
        snapshot = take(actor, run_tasks, vm, "late")
        assert not snapshot.consistent
        assert snapshot.consistency_note.startswith("crash-consistent: the guest did not freeze (no ")
        wait_for(lambda: frozen_and_thawed(tmp_path)[0] >= 1 and
                 frozen_and_thawed(tmp_path)[1] >= frozen_and_thawed(tmp_path)[0], 30, "the guest to be thawed")
    finally:
        stop(agent)


def test_without_a_link_the_snapshot_says_so(running_vm, actor, run_tasks):
    vm, _, _ = running_vm
    snapshot = take(actor, run_tasks, vm, "no-link")
    assert (snapshot.consistent, snapshot.consistency_note) == (
        False, "crash-consistent: the Guest Tools agent is not linked")

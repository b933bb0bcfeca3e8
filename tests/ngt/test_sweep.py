"""The periodic sweep of tools ISOs no CD-ROM references (issue 14, item 16)."""

import os
import time
from pathlib import Path

from django.conf import settings

from ngt import tasks
from ngt.services import guest_tools
from tests.ngt.test_services import mount, tools_iso

AN_HOUR_AGO = time.time() - 3600


def age(path: Path) -> None:
    os.utime(path, (AN_HOUR_AGO, AN_HOUR_AGO))


def remount_killed_before_the_old_iso_is_removed(actor, vm, run_tasks, monkeypatch) -> Path:
    """A remount whose worker dies right after its commit: the previous ISO stays on disk."""
    old = tools_iso(vm)
    with monkeypatch.context() as patch:
        patch.setattr(guest_tools.tools_iso, "remove_iso", lambda path: None)  # killed before it runs
        mount(actor, vm, run_tasks)
    assert old.is_file() and tools_iso(vm) != old
    return old


def test_the_beat_sweep_removes_a_tools_iso_left_by_a_killed_remount(vm, actor, run_tasks, monkeypatch):
    mount(actor, vm, run_tasks)
    old = remount_killed_before_the_old_iso_is_removed(actor, vm, run_tasks, monkeypatch)
    current = tools_iso(vm)
    left_part = old.with_name("f00-left.iso.part")
    left_part.write_bytes(b"half an ISO")
    for path in (old, current, left_part):
        age(path)

    assert tasks.sweep() == 2  # what celery beat runs

    assert not old.exists() and not left_part.exists()
    assert current.is_file()  # in the VM's CD-ROM
    assert settings.CELERY_BEAT_SCHEDULE["sweep-tools-isos"]["task"] == "facet.ngt.sweep_tools_isos"


def test_the_sweep_keeps_a_young_iso_and_one_a_queued_mount_may_give_back(vm, actor, run_tasks, monkeypatch):
    mount(actor, vm, run_tasks)
    old = remount_killed_before_the_old_iso_is_removed(actor, vm, run_tasks, monkeypatch)
    assert tasks.sweep() == 0  # younger than the grace period: a mount may be writing it
    age(old)
    in_cdrom = tools_iso(vm)
    guest_tools.request_mount(actor, vm)  # queued: if it fails, its CD-ROM gets `in_cdrom` back
    age(in_cdrom)
    assert tasks.sweep() == 1
    assert not old.exists() and in_cdrom.is_file()

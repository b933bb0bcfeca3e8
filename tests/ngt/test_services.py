"""Guest Tools operations through the services, tasks run in-process."""

import stat
import subprocess
from pathlib import Path

import pytest

from console.core.drivers.sim import SimDriver
from console.core.errors import Conflict, InvalidRequest
from console.core.models import AuditEvent, SimDomain, Task
from console.core.tasks.control import rerun
from console.models import VM, CdRom
from console.services import bulk, vms
from ngt.agent import AGENT_VERSION
from ngt.models import GuestTools, VMCertificate
from ngt.services import guest_tools
from tests.ngt.conftest import iso_file

GiB = 1024**3


def tools_iso(vm: VM) -> Path:
    return Path(vm.cdroms.get(purpose="guest-tools").iso_path)


def mount(actor, vm: VM, run_tasks, **options) -> Task:
    task = guest_tools.request_mount(actor, vm, **options)
    run_tasks()
    task.refresh_from_db()
    assert task.status == "succeeded", task.error
    return task


def test_enable_creates_the_state_and_the_ca_without_an_iso(vm, actor, run_tasks, ca_key_file):
    task = guest_tools.request_enable(actor, vm)
    run_tasks()
    task.refresh_from_db()
    assert task.status == "succeeded", task.error
    state = GuestTools.objects.get(vm=vm)
    assert state.enabled and not state.iso_mounted and state.certificate is None
    assert not vm.cdroms.filter(purpose="guest-tools").exists()
    assert stat.S_IMODE(ca_key_file.stat().st_mode) == 0o600
    assert vm.cluster.guest_tools_ca.fingerprint_sha256


def test_mount_writes_an_iso_readable_by_root_and_the_hypervisor_only_and_inserts_it(vm, actor, run_tasks):
    mount(actor, vm, run_tasks)
    iso = tools_iso(vm)
    assert iso.is_file() and stat.S_IMODE(iso.stat().st_mode) == 0o640
    assert SimDomain.objects.get(uuid=vm.uuid).cdroms == {"0": str(iso)}
    state = GuestTools.objects.select_related("certificate").get(vm=vm)
    assert state.enabled and state.iso_mounted
    assert not state.certificate.revoked and state.certificate.not_after > state.certificate.not_before
    assert not list(iso.parent.glob("*.part"))


def test_remount_issues_a_new_pair_revokes_the_old_and_deletes_the_old_iso(vm, actor, run_tasks):
    mount(actor, vm, run_tasks)
    first_iso, first = tools_iso(vm), GuestTools.objects.get(vm=vm).certificate
    first_key = iso_file(first_iso, "config/client.key")
    mount(actor, vm, run_tasks)
    second_iso, second = tools_iso(vm), GuestTools.objects.get(vm=vm).certificate
    first.refresh_from_db()
    assert first.revoked and first.revoked_at is not None
    assert not second.revoked and second.serial != first.serial
    assert not first_iso.exists() and second_iso.is_file()
    assert iso_file(second_iso, "config/client.key") != first_key
    assert vm.cdroms.filter(purpose="guest-tools").count() == 1  # the same slot, reused
    assert AuditEvent.objects.filter(action="ngt.certificate.issue", detail__revoked=[first.serial]).exists()


def test_unmount_ejects_and_deletes_the_iso_and_keeps_the_certificate(vm, actor, run_tasks):
    mount(actor, vm, run_tasks)
    iso = tools_iso(vm)
    guest_tools.request_unmount(actor, vm)
    run_tasks()
    assert not iso.exists()
    assert SimDomain.objects.get(uuid=vm.uuid).cdroms == {}
    assert CdRom.objects.get(vm=vm, slot=0).iso_path == ""
    state = GuestTools.objects.get(vm=vm)
    assert state.enabled and not state.iso_mounted and not state.certificate.revoked


def test_disable_unmounts_and_revokes(vm, actor, run_tasks):
    mount(actor, vm, run_tasks)
    iso = tools_iso(vm)
    guest_tools.request_disable(actor, vm)
    run_tasks()
    state = GuestTools.objects.get(vm=vm)
    assert not state.enabled and not state.iso_mounted and state.certificate is None
    assert not iso.exists()
    assert VMCertificate.objects.get(vm=vm).revoked


def test_a_template_is_refused(vm, actor):
    VM.objects.filter(pk=vm.pk).update(is_template=True)
    vm.refresh_from_db()
    with pytest.raises(Conflict, match="template"):
        guest_tools.request_mount(actor, vm)


def test_a_running_vm_whose_cd_rom_holds_its_customization_media_gets_a_hot_plugged_drive(vm, actor, run_tasks,
                                                                                           cluster):
    # The case that failed with "no empty CD-ROM": slot 0 holds media the user cannot eject.
    CdRom.objects.filter(vm=vm).update(iso_path=str(cluster.images.get(name="rescue-iso").path),
                                       purpose="customization")
    VM.objects.filter(pk=vm.pk).update(power_state="on")
    vm.refresh_from_db()
    mount(actor, vm, run_tasks)
    assert vm.cdroms.get(purpose="guest-tools").slot == 4  # the first slot of the SCSI bus, which hot-plugs
    assert SimDomain.objects.get(uuid=vm.uuid).cdroms["4"] == str(tools_iso(vm))


def test_a_running_vm_whose_hot_pluggable_slots_are_full_is_a_409_that_says_what_to_do(vm, actor, cluster):
    iso = cluster.images.get(name="rescue-iso")
    CdRom.objects.filter(vm=vm).update(iso_path=str(iso.path), image=iso, purpose="image")
    CdRom.objects.bulk_create(CdRom(vm=vm, slot=slot, iso_path=str(iso.path), image=iso, purpose="image")
                              for slot in range(4, 12))
    VM.objects.filter(pk=vm.pk).update(power_state="on")
    vm.refresh_from_db()
    with pytest.raises(Conflict) as caught:
        guest_tools.request_mount(actor, vm)
    assert caught.value.status_code == 409
    assert caught.value.errors["slot"] == [
        "VM web-1 is on and has no empty CD-ROM (" + "; ".join(
            f"CD-ROM {slot} holds tools.iso, which you can eject" for slot in [0, *range(4, 12)]) +
        "), and its hypervisor cannot add a drive to it while it runs: power the VM off (a drive is then added), "
        "or free a CD-ROM"]
    assert not Task.objects.filter(kind="ngt.mount").exists()


def test_a_vm_that_is_off_gets_a_cd_rom_added(vm, actor, run_tasks, cluster):
    iso = cluster.images.get(name="rescue-iso")
    CdRom.objects.filter(vm=vm).update(iso_path=str(iso.path), image=iso, purpose="image")
    mount(actor, vm, run_tasks)
    assert vm.cdroms.get(purpose="guest-tools").slot == 1


def test_a_second_mount_while_one_is_queued_is_refused(vm, actor):
    guest_tools.request_mount(actor, vm)
    with pytest.raises(Conflict, match="already queued"):
        guest_tools.request_mount(actor, vm)


def test_unknown_capability_is_refused_and_known_ones_reach_ngt_json(vm, actor, run_tasks):
    with pytest.raises(InvalidRequest, match="unknown capability 'backup'"):
        guest_tools.set_capabilities(actor, vm, ["backup"])
    guest_tools.set_capabilities(actor, vm, ["vss-snapshot", "self-service-restore", "vss-snapshot"])
    assert GuestTools.objects.get(vm=vm).capabilities == ["self-service-restore", "vss-snapshot"]
    mount(actor, vm, run_tasks)
    assert b'"vss-snapshot"' in iso_file(tools_iso(vm), "config/ngt.json")


def test_unmount_and_disable_say_when_there_is_nothing_to_do(vm, actor):
    with pytest.raises(Conflict, match="no Guest Tools ISO is mounted"):
        guest_tools.request_unmount(actor, vm)
    with pytest.raises(Conflict, match="not enabled"):
        guest_tools.request_disable(actor, vm)


def refusing_insert(self, vm, slot, path):
    raise RuntimeError("hypervisor said no")


def test_a_failed_insert_leaves_no_iso_and_no_certificate(vm, actor, run_tasks, monkeypatch):
    monkeypatch.setattr(SimDriver, "insert_cdrom", refusing_insert)
    task = guest_tools.request_mount(actor, vm)
    run_tasks()
    task.refresh_from_db()
    assert task.status == "failed" and "see the worker log, error id" in task.error  # not a DriverError
    assert not VMCertificate.objects.exists()
    assert not list(Path(task.params["iso_path"]).parent.iterdir())
    assert CdRom.objects.get(vm=vm, slot=0).iso_path == ""
    assert not GuestTools.objects.get(vm=vm).enabled


def test_a_failed_mount_can_be_rerun(vm, actor, run_tasks, monkeypatch):
    working_insert = SimDriver.insert_cdrom
    monkeypatch.setattr(SimDriver, "insert_cdrom", refusing_insert)
    task = guest_tools.request_mount(actor, vm)
    run_tasks()
    monkeypatch.setattr(SimDriver, "insert_cdrom", working_insert)
    rerun(actor, Task.objects.get(pk=task.pk))
    run_tasks()
    task.refresh_from_db()
    assert task.status == "succeeded", task.error
    assert tools_iso(vm) == Path(task.params["iso_path"]) and tools_iso(vm).is_file()
    assert GuestTools.objects.get(vm=vm).iso_mounted and VMCertificate.objects.count() == 1


def test_deleting_the_vm_deletes_its_tools_iso(vm, actor, run_tasks, django_capture_on_commit_callbacks):
    mount(actor, vm, run_tasks)
    iso = tools_iso(vm)
    vms.request_delete(actor, vm)
    with django_capture_on_commit_callbacks(execute=True):
        run_tasks()
    assert not iso.exists()


def test_bulk_mount_finishes_the_others_and_reports_each_failure(cluster, actor, run_tasks):
    for name in ("a", "b", "c"):
        vms.request_create_vm(actor, vms.VMSpec(name=name, vcpus=1, memory_bytes=GiB, is_template=name == "b"))
    run_tasks()
    parent = bulk.request_bulk(actor, "guest-tools-mount", VM.objects.all())
    run_tasks()
    parent.refresh_from_db()
    children = {child.entity_name: child for child in parent.children.all()}
    assert children["a"].status == children["c"].status == "succeeded"
    assert children["b"].status == "failed" and "template" in children["b"].error
    assert parent.status == "failed" and parent.error == "1 of 3 failed"
    assert GuestTools.objects.filter(iso_mounted=True).count() == 2


def test_the_iso_holds_the_layout_with_real_tools(vm, actor, run_tasks, tmp_path, guest_tools_packages):
    mount(actor, vm, run_tasks)
    iso = tools_iso(vm)
    info = subprocess.run(["isoinfo", "-d", "-i", str(iso)], check=True, capture_output=True, text=True).stdout
    assert "Volume id: FACET_TOOLS" in info and "Joliet" in info and "Rock Ridge" in info
    built = {path.relative_to(guest_tools_packages).as_posix() for path in guest_tools_packages.glob("*/**/*")
             if path.is_file()}
    expected = {"config/ngt.json", "config/ca.pem", "config/client.pem", "config/client.key", "installer/README",
                *(f"installer/{path}" for path in built)}
    assert {f"installer/linux/{name}" for name in (f"facet-guest-tools_{AGENT_VERSION}_all.deb", "install.sh",
            f"facet-guest-tools-{AGENT_VERSION}.tar.gz", f"facet-guest-tools-{AGENT_VERSION}-1.noarch.rpm")} | {
            "installer/windows/install.ps1", "installer/windows/facet_guest_tools/__main__.py"} <= expected
    for extension in ("-J", "-R"):
        assert iso_paths(iso, extension) == expected
    assert iso_file(iso, f"installer/linux/facet-guest-tools_{AGENT_VERSION}_all.deb") == (
        guest_tools_packages / f"linux/facet-guest-tools_{AGENT_VERSION}_all.deb").read_bytes()
    for name in ("ca.pem", "client.pem"):
        (tmp_path / name).write_bytes(iso_file(iso, f"config/{name}"))
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(tmp_path / "ca.pem"), str(tmp_path / "client.pem")],
                            capture_output=True, text=True)
    assert verify.returncode == 0 and ": OK" in verify.stdout, verify.stderr
    subject = subprocess.run(["openssl", "x509", "-noout", "-subject", "-in", str(tmp_path / "client.pem")],
                             check=True, capture_output=True, text=True).stdout
    assert str(vm.uuid) in subject


def test_config_only_leaves_out_the_installer(vm, actor, run_tasks, guest_tools_packages):
    mount(actor, vm, run_tasks, config_only=True)
    assert {path.split("/")[0] for path in iso_paths(tools_iso(vm))} == {"config"}


def test_without_built_packages_the_readme_says_how_to_build_them(vm, actor, run_tasks):
    mount(actor, vm, run_tasks)
    assert [path for path in iso_paths(tools_iso(vm)) if path.startswith("installer/")] == ["installer/README"]
    assert b"make guest-tools-packages" in iso_file(tools_iso(vm), "installer/README")


def iso_paths(iso: Path, extension: str = "-R") -> set[str]:
    """Every file of the ISO by its path, as isoinfo lists them with Rock Ridge (or Joliet) names."""
    listing = subprocess.run(["isoinfo", extension, "-l", "-i", str(iso)], check=True, capture_output=True,
                             text=True).stdout
    paths, directory = set(), ""
    for line in listing.splitlines():
        if line.startswith("Directory listing of "):
            directory = line.removeprefix("Directory listing of ").strip().strip("/")
        elif line.startswith("-"):
            paths.add(f"{directory}/{line.split()[-1]}".lstrip("/"))
    return paths

"""The guest's own customization result: the agent reads cloud-init's status and error lines and sends them
once welcomed and whenever they change; the Guest Tools Service relays them, a batch at a time, to the
customization app (its `guest_reported` VM hook), which ends the customization and removes its media."""

import asyncio
import json
from pathlib import Path

import pytest

from console.core.models import SimDomain, Task
from console.core.registry import GuestReport
from console.models import VM
from customization.models import VMCustomization
from customization.services import lifecycle
from customization.services.lifecycle import CustomizationRequest
from ngt.agent import guest, protocol
from ngt.daemon import wire
from ngt.models import GuestTools
from tests.ngt.test_daemon_hello import RecordingAgent
from tests.ngt.test_daemon_state import run_with_leader, serial_opening

GiB = 1024**3
# What cloud-init 24 writes when a runcmd exits 1 (modules-final's scripts_user module raises).
RUNCMD_ERROR = "('scripts_user', RuntimeError('Runparts: 1 failures (runcmd) in 1 attempted commands'))"


def cloud_init_ran(directory: Path, errors=(), warnings=(), finished: bool = True) -> None:
    """/run/cloud-init as cloud-init leaves it: status.json per stage, result.json once the final stage ran."""
    directory.mkdir(parents=True, exist_ok=True)
    stage = {"errors": [], "recoverable_errors": {}, "start": 1.0, "finished": 2.0}
    final = {**stage, "errors": list(errors), "recoverable_errors": {"WARNING": list(warnings)} if warnings else {}}
    status = {"v1": {"datasource": "DataSourceConfigDrive", "init-local": stage, "init": stage,
                     "modules-config": stage, "modules-final": final if finished else {**stage, "finished": None},
                     "stage": None if finished else "modules-final"}}
    (directory / "status.json").write_text(json.dumps(status))
    if finished:
        (directory / "result.json").write_text(json.dumps({"v1": {"datasource": "DataSourceConfigDrive",
                                                                  "errors": list(errors)}}))


# --- The agent's side ------------------------------------------------------------------------------------------
def test_the_agent_reads_cloud_inits_result_with_its_error_lines(tmp_path):
    assert guest.customization_status(tmp_path)["status"] == "unknown"
    cloud_init_ran(tmp_path, finished=False)
    assert guest.customization_status(tmp_path) == {"status": "running", "message": "modules-final"}
    cloud_init_ran(tmp_path, errors=[RUNCMD_ERROR], warnings=["Failed to run module scripts_user"])
    assert guest.customization_status(tmp_path) == {
        "status": "failed", "message": f"{RUNCMD_ERROR}\nWARNING: Failed to run module scripts_user"}
    cloud_init_ran(tmp_path, warnings=["Deprecated key: chpasswd.list"])
    assert guest.customization_status(tmp_path) == {
        "status": "succeeded", "message": "WARNING: Deprecated key: chpasswd.list"}
    cloud_init_ran(tmp_path)
    assert guest.customization_status(tmp_path) == {"status": "succeeded", "message": ""}


def test_a_stage_error_that_result_json_lacks_still_fails(tmp_path):
    cloud_init_ran(tmp_path)
    status = json.loads((tmp_path / "status.json").read_text())
    status["v1"]["init"]["errors"] = ["sys.exit(1) called"]
    (tmp_path / "status.json").write_text(json.dumps(status))
    assert guest.customization_status(tmp_path) == {"status": "failed", "message": "sys.exit(1) called"}


def test_garbage_in_cloud_inits_files_is_no_status(tmp_path):
    (tmp_path / "result.json").write_text('{"v1": ["not", "an", "object"]}')
    (tmp_path / "status.json").write_text("not json")
    assert guest.customization_status(tmp_path)["status"] == "unknown"


def test_the_customization_message_carries_status_and_lines():
    message = protocol.customization({"status": "failed", "message": "a\nb"})
    assert (message["type"], message["status"], message["message"]) == ("customization", "failed", "a\nb")
    assert wire.check_agent_message(json.loads(protocol.encode(message))) is not None


@pytest.mark.parametrize(("message", "reason"), [
    ({"id": "c", "type": "customization", "status": "unknown", "message": ""}, "is not one of running, succeeded"),
    ({"id": "c", "type": "customization", "status": "failed", "message": ["x"]}, "'message' is not a string"),
])
def test_the_service_refuses_a_customization_message_it_cannot_read(message, reason):
    with pytest.raises(wire.Refusal, match=reason):
        wire.check_agent_message(message)


# --- The console's side -----------------------------------------------------------------------------------------
@pytest.fixture
def customized(cluster, actor, run_tasks, settings):
    """A running VM with cloud-init media in a CD-ROM; FACET_PUBLIC_URL left at its loopback default, so no
    phone_home can reach the console."""
    from console.services import vms

    settings.PUBLIC_URL = "http://127.0.0.1:8000"
    vms.request_create_vm(actor, vms.VMSpec(name="app-1", vcpus=1, memory_bytes=GiB, power_on=True, options={
        "customization": CustomizationRequest(content="#cloud-config\nruncmd: [[\"false\"]]\n")}))
    run_tasks()
    vm = VM.objects.get(name="app-1")
    assert VMCustomization.objects.get(vm=vm).status == "running"
    return vm


def test_a_failed_result_ends_the_customization_with_the_guests_lines_and_removes_the_media(customized, run_tasks):
    iso = Path(VMCustomization.objects.get(vm=customized).iso_path)
    lifecycle.guest_reported([GuestReport(customized.pk, "failed", RUNCMD_ERROR)])
    shown = VMCustomization.objects.get(vm=customized)
    assert (shown.status, shown.message) == ("failed", RUNCMD_ERROR)
    assert Task.objects.filter(kind="vm.customization.remove", entity_uuid=customized.uuid).exists()
    run_tasks()
    assert not iso.exists() and not customized.cdroms.filter(purpose="customization").exists()
    assert SimDomain.objects.get(uuid=customized.uuid).cdroms == {}
    # The first end stands; a guest saying it again changes nothing.
    lifecycle.guest_reported([GuestReport(customized.pk, "succeeded", "")])
    assert VMCustomization.objects.get(vm=customized).status == "failed"


def test_reports_of_vms_without_customization_under_way_are_left_alone(customized, vm, django_assert_num_queries):
    with django_assert_num_queries(1):  # one query for the whole batch when no VM takes a report
        lifecycle.guest_reported([GuestReport(vm.pk, "succeeded", ""),
                                  GuestReport(10**6, "failed", "no such VM")])
    assert not VMCustomization.objects.filter(vm=vm).exists()


@pytest.mark.django_db(transaction=True)  # the leader's thread uses a connection of its own
def test_the_leader_relays_a_guests_result_at_its_next_flush(customized, monkeypatch):
    agent = RecordingAgent()
    GuestTools.objects.create(vm=customized, enabled=True)
    hello = {"id": "h1", "type": "hello", "vm_uuid": str(customized.uuid), "certificate_serial": ""}

    async def scenario(the_leader):
        session = await the_leader.admit(serial_opening(customized), hello, agent)
        the_leader.receive(session, {"id": "c1", "type": "customization", "status": "running", "message": "init"})
        the_leader.receive(session, {"id": "c2", "type": "customization", "status": "failed",
                                     "message": RUNCMD_ERROR})
        await asyncio.sleep(0)

    run_with_leader(scenario, monkeypatch)
    shown = VMCustomization.objects.get(vm=customized)
    assert (shown.status, shown.message) == ("failed", RUNCMD_ERROR)  # the last word of the batch
    assert Task.objects.filter(kind="vm.customization.remove", entity_uuid=customized.uuid).exists()

"""Bulk clone: the plan, the request and every bad input (a 400 naming the field, nothing created), through
the service and `POST /api/v1/vms/{uuid}/bulk-clone/`; cancel."""

import json
from pathlib import Path

import pytest

from console.core.models import AuditEvent, SimDomain, Task
from console.core.tasks.control import request_cancel
from console.models import VM, Host, Network, Nic
from console.services import vms
from console.services.bulk_clone import BulkCloneRequest, plan_bulk_clone, request_bulk_clone
from customization.services.lifecycle import CustomizationRequest

GiB = 1024**3
MiB = 1024**2
CLOUD_CONFIG = "#cloud-config\nruncmd:\n  - echo hello\n"
UNATTEND = """<?xml version="1.0" encoding="utf-8"?>
<unattend xmlns="urn:schemas-microsoft-com:unattend">
  <settings pass="specialize">
    <component name="Microsoft-Windows-Shell-Setup" processorArchitecture="amd64">
      <ComputerName>*</ComputerName>
      <RegisteredOrganization>{{ org }}</RegisteredOrganization>
    </component>
  </settings>
</unattend>
"""


@pytest.fixture
def source(cluster, actor, run_tasks):
    """A powered-off VM of 256 MiB with one disk and one NIC with a static address; the pool holds 101."""
    Network.objects.filter(name="lan").update(pool_end="10.0.0.200")
    lan = Network.objects.get(name="lan")
    vms.request_create_vm(actor, vms.VMSpec(name="gold", vcpus=2, memory_bytes=256 * MiB, disk_sizes=[2 * MiB],
                                            nics=[vms.NicSpec(network=lan, ip="auto")]))
    run_tasks()
    return VM.objects.get(name="gold")


def made() -> tuple[int, int, int, int]:
    """What a refused request must not have added: VMs, NICs, tasks, audit events."""
    return VM.objects.count(), Nic.objects.count(), Task.objects.count(), AuditEvent.objects.count()


def asked(source: VM, **overrides) -> BulkCloneRequest:
    values = {"source": source, "count": 3, "name_pattern": "web-{n:03}"}
    values.update(overrides)
    return BulkCloneRequest(**values)


def test_the_plan_decides_everything_and_writes_nothing(source):
    before = made()
    plan = plan_bulk_clone(asked(source, count=4, start_index=7))
    assert made() == before
    answer = plan.as_dict()
    assert [c["name"] for c in answer["clones"]] == ["web-007", "web-008", "web-009", "web-010"]
    assert [c["hostname"] for c in answer["clones"]] == ["web-007", "web-008", "web-009", "web-010"]
    assert answer["hosts"] == {"host-1": 2, "host-2": 2}  # spread by free memory
    macs = [nic["mac"] for c in answer["clones"] for nic in c["nics"]]
    ips = [nic["ip"] for c in answer["clones"] for nic in c["nics"]]
    assert len(set(macs)) == 4 and source.nics.get().mac not in macs
    assert ips == ["10.0.0.101", "10.0.0.102", "10.0.0.103", "10.0.0.104"]  # 10.0.0.100 is the source's
    assert answer["totals"] == {"vms": 4, "vcpus": 8, "memory_bytes": 4 * 256 * MiB, "disk_bytes": 4 * 2 * MiB,
                                "ips": 4}


def test_bulk_clone_makes_every_clone_with_its_own_values(source, actor, run_tasks):
    table = "name,hostname,ip,role\nweb-a,alpha,10.0.0.150,db\n,,,web\nweb-c,,,\n"
    parent = request_bulk_clone(actor, asked(source, per_clone_csv=table, power_on=True, options={
        "customization": CustomizationRequest(content=CLOUD_CONFIG, key_values={"site": "paris"})}))
    assert parent.kind == "vm.bulk-clone" and parent.children.count() == 3
    assert {c.kind for c in parent.children.all()} == {"vm.clone"}
    assert {c.queue for c in parent.children.all()} == {"host.host-1", "host.host-2"}
    run_tasks()
    parent.refresh_from_db()
    assert parent.status == "succeeded" and parent.message == "3 of 3 done"
    clones = {vm.name: vm for vm in VM.objects.filter(parent=source)}
    assert sorted(clones) == ["web-002", "web-a", "web-c"]
    assert clones["web-a"].hostname == "alpha" and clones["web-a"].nics.get().ip == "10.0.0.150"
    assert clones["web-002"].nics.get().ip == "10.0.0.101"
    assert all(vm.power_state == "on" for vm in clones.values())
    assert clones["web-a"].customization.key_values == {"site": "paris", "role": "db"}
    assert clones["web-002"].customization.key_values == {"site": "paris", "role": "web"}
    assert clones["web-c"].customization.key_values == {"site": "paris"}
    for vm in clones.values():  # each clone's media name its own instance and hostname
        data = Path(vm.customization.iso_path).read_bytes()
        assert str(vm.uuid).encode() in data and vm.hostname.encode() in data
    assert AuditEvent.objects.filter(action="vm.clone").count() == 3
    assert AuditEvent.objects.filter(action="vm.bulk-clone").count() == 1


def refused(source: VM, field: str, *fragments: str, status: int = 400, **overrides) -> None:
    """The request is refused before anything is written, naming `field` and saying `fragments`."""
    from console.core.errors import ServiceError

    before = made()
    with pytest.raises(ServiceError) as caught:
        plan_bulk_clone(asked(source, **overrides))
    with pytest.raises(ServiceError):
        request_bulk_clone(vms_actor(), asked(source, **overrides))
    assert made() == before
    assert caught.value.status_code == status
    assert field in caught.value.errors, caught.value.errors
    text = " ".join(caught.value.errors[field])
    for fragment in fragments:
        assert fragment in text, text


def vms_actor():
    from console.core.actors import Actor

    return Actor.system()


def test_count_zero_or_over_the_limit_is_refused_saying_the_limit(source, settings):
    refused(source, "count", "1 to 1000", count=0)
    refused(source, "count", "1 to 1000", count=1001)
    settings.FACET_BULK_CLONE_MAX = 5
    refused(source, "count", "1 to 5", count=6)


@pytest.mark.parametrize(("pattern", "fragment"), [
    ("web", "has no {n}"),
    ("web-{i}", "the only field is {n}"),
    ("web {n}", "gives 'web 9' for n=9"),
    ("web-{n!s:.1}", "gives 'web-1' twice"),
    ("web-{n:zz}", "Unknown format code"),
    ("web-{n", "web-{n"),
])
def test_a_bad_pattern_is_refused(source, pattern, fragment):
    refused(source, "name_pattern", fragment, name_pattern=pattern, start_index=9)


def test_a_pattern_giving_a_taken_name_is_refused(source):
    VM.objects.filter(name="gold").update(name="gold-2")
    source.refresh_from_db()
    refused(source, "name_pattern", "gives 'gold-2' for n=2, and a VM of that name exists", name_pattern="gold-{n}",
            count=3)


def test_csv_rows_not_matching_the_count(source):
    refused(source, "per_clone_csv", "2 data rows for 3 clones", per_clone_csv="name\na\nb\n")
    refused(source, "per_clone", "4 objects for 3 clones", per_clone=[{}, {}, {}, {}])


def test_duplicate_names_and_bad_cells_name_the_line_and_column(source):
    refused(source, "per_clone_csv", "line 4, column 1 (name): 'x' is also the name of clone 1",
            per_clone_csv="name,hostname\nx,a\ny,b\nx,c\n")
    refused(source, "per_clone_csv", "line 2, column 2 (hostname): '-bad'",
            per_clone_csv="name,hostname\n,-bad\n,\n,\n")
    refused(source, "per_clone_csv", "line 4, column 1 (name): 'web-001' is also the name of clone 1",
            per_clone_csv='name\n""\n\nweb-001\n""\n')  # a blank line is no row; "" is an empty cell
    refused(source, "per_clone_csv", "line 2, column 1 (name): a VM named 'gold' already exists",
            per_clone_csv='name\ngold\n""\n""\n')
    refused(source, "per_clone[1].name", "'a b'", per_clone=[{}, {"name": "a b"}, {}])


def test_duplicate_or_foreign_ips_are_refused(source):
    refused(source, "per_clone_csv", "line 3, column 2 (ip): 10.0.0.150 is also the address of clone 1",
            per_clone_csv="name,ip\n,10.0.0.150\n,10.0.0.150\n,\n")
    refused(source, "per_clone_csv", "line 2, column 2 (ip): 10.0.0.50 is outside the static-IP pool of network "
                                     "lan (10.0.0.100 to 10.0.0.200)", per_clone_csv="name,ip\n,10.0.0.50\n,\n,\n")
    refused(source, "per_clone_csv", "10.0.0.100 is already assigned", per_clone_csv="ip,name\n10.0.0.100,\n,\n,\n")
    refused(source, "per_clone_csv", "line 2, column 1 (ip): 'ten' is not an IP address",
            per_clone_csv="ip,name\nten,\n,\n,\n")


def test_an_exhausted_pool_is_refused(source):
    Network.objects.filter(name="lan").update(pool_end="10.0.0.102")
    refused(source, "count", "2 free addresses; the clones need 3")


def test_columns_unknown_to_the_script_are_refused(source):
    refused(source, "per_clone_csv", "line 1, column 2 (role): unknown column: no option of the request takes",
            per_clone_csv="name,role\n,a\n,b\n,c\n")
    jinja = "## template: jinja\n#cloud-config\nruncmd:\n  - echo {{ ds.meta_data.meta.role }}\n"
    refused(source, "per_clone_csv", "column 3 (colour): unknown column: the script does not use it",
            per_clone_csv="name,role,colour\n,a,x\n,b,y\n,c,z\n",
            options={"customization": CustomizationRequest(content=jinja)})
    plan = plan_bulk_clone(asked(source, per_clone_csv="name,role\n,a\n,b\n,c\n",
                                 options={"customization": CustomizationRequest(content=jinja)}))
    assert [c.key_values for c in plan.clones] == [{"role": "a"}, {"role": "b"}, {"role": "c"}]


def test_sysprep_takes_only_its_placeholders(source):
    VM.objects.filter(pk=source.pk).update(guest_os="windows")
    source.refresh_from_db()
    answer_file = CustomizationRequest(content=UNATTEND)
    refused(source, "per_clone_csv", "column 2 (colour)", per_clone_csv="name,colour,org\n,x,a\n,y,b\n,z,c\n",
            options={"customization": answer_file})
    plan = plan_bulk_clone(asked(source, per_clone_csv="name,org\n,a\n,b\n,c\n",
                                 options={"customization": answer_file}))
    assert plan.clones[2].key_values == {"org": "c"}


def test_a_host_without_capacity_for_its_share_is_refused(source):
    host = Host.objects.get(name="host-1")
    refused(source, "placement", "host host-1 has 16 GiB of memory free", "65 clones", "room for 64",
            count=65, placement={"host": str(host.uuid)})
    refused(source, "placement", "room for 128 clones", count=129)
    refused(source, "placement", "no host of cluster", placement={"host": "9f4e4b8c-0000-4000-8000-000000000000"})
    refused(source, "placement", "unknown policy 'random'", placement={"policy": "random"})


def test_a_running_source_for_a_linked_clone_is_refused(source, actor, run_tasks):
    VM.objects.filter(pk=source.pk).update(power_state="on")
    source.refresh_from_db()
    refused(source, "linked", "VM gold is on", linked=True)
    assert plan_bulk_clone(asked(source, linked=False)).clones  # a full clone of a running VM is fine


def test_the_whole_plan_is_checked_before_the_first_clone(source):
    """The last row is bad: not even the first clone is made."""
    refused(source, "per_clone_csv", "line 4", per_clone_csv="name,hostname\na,a\nb,b\nc,c_\n")


# --- API -----------------------------------------------------------------------------------------------
def test_api_dry_run_answers_the_plan_and_creates_nothing(source, api):
    before = made()
    answer = api.post(f"/api/v1/vms/{source.uuid}/bulk-clone/?dry_run=1",
                      {"count": 2, "name_pattern": "app-{n:02}", "start_index": 0,
                       "placement": {"host": str(Host.objects.get(name="host-2").uuid)}}, format="json")
    assert answer.status_code == 200, answer.content
    assert made() == before
    plan = answer.json()
    assert [c["name"] for c in plan["clones"]] == ["app-00", "app-01"]
    assert plan["hosts"] == {"host-2": 2} and plan["totals"]["ips"] == 2
    assert all(nic["mac"].startswith("52:54:00:") for c in plan["clones"] for nic in c["nics"])


def test_api_bulk_clone_answers_202_with_the_parent(source, api, run_tasks):
    answer = api.post(f"/api/v1/vms/{source.uuid}/bulk-clone/", {
        "count": 2, "name_pattern": "api-{n}", "per_clone": [{"hostname": "one"}, {"hostname": "two", "tier": "x"}],
        "customization": {"content": CLOUD_CONFIG}, "power_on": True}, format="json")
    assert answer.status_code == 202, answer.content
    parent = Task.objects.get(uuid=answer.json()["uuid"])
    assert parent.kind == "vm.bulk-clone" and parent.children.count() == 2
    run_tasks()
    parent.refresh_from_db()
    assert parent.status == "succeeded"
    assert VM.objects.get(name="api-2").customization.key_values == {"tier": "x"}


@pytest.mark.parametrize(("body", "field", "fragment"), [
    ({"count": 0}, "count", "1 to 1000"),
    ({"count": 5000}, "count", "1 to 1000"),
    ({"name_pattern": "web"}, "name_pattern", "has no {n}"),
    ({"per_clone_csv": "name,ip\n,10.0.0.1\n"}, "per_clone_csv", "1 data rows for 2 clones"),
    ({"per_clone_csv": "name,ip\n,10.0.0.9\n,\n"}, "per_clone_csv", "line 2, column 2 (ip)"),
    ({"per_clone_csv": "name,ip\n,10.0.0.150\n,10.0.0.150\n"}, "per_clone_csv", "line 3, column 2 (ip)"),
    ({"per_clone_csv": "name\nq\nq\n"}, "per_clone_csv", "line 3, column 1 (name)"),
    ({"per_clone_csv": "name,shoe\n,1\n,2\n"}, "per_clone_csv", "column 2 (shoe): unknown column"),
    ({"count": 100, "placement": {"policy": "spread"}, "name_pattern": "big-{n}"}, "placement", "room for"),
    ({"linked": True}, "linked", "is on"),
])
def test_api_bad_input_is_a_400_naming_the_field(source, api, body, field, fragment):
    VM.objects.filter(pk=source.pk).update(power_state="on", memory_bytes=GiB)
    before = made()
    answer = api.post(f"/api/v1/vms/{source.uuid}/bulk-clone/", {"count": 2, "name_pattern": "w-{n}", **body},
                      format="json")
    assert answer.status_code == 400, answer.content
    assert made() == before
    assert fragment in json.dumps(answer.json()[field]), answer.json()


def test_a_viewer_cannot_bulk_clone(source, viewer):
    from tests.conftest import client_for

    answer = client_for(viewer).post(f"/api/v1/vms/{source.uuid}/bulk-clone/?dry_run=1",
                                     {"count": 2, "name_pattern": "w-{n}"}, format="json")
    assert answer.status_code == 403


# --- cancel --------------------------------------------------------------------------------------------
def test_cancel_drops_the_clones_not_started_and_keeps_the_made_ones(source, actor, run_tasks, api):
    parent = request_bulk_clone(actor, asked(source, count=5, options={
        "customization": CustomizationRequest(content=CLOUD_CONFIG)}))
    from console.core.tasks.running import execute

    first, second = parent.children.order_by("id")[:2]
    execute(str(first.uuid), first.attempts)  # made
    Task.objects.filter(pk=second.pk).update(status="running", started_at=first.started_at)  # under way
    answer = api.post(f"/api/v1/tasks/{parent.uuid}/cancel/")
    assert answer.status_code == 200, answer.content
    assert answer.json()["status"] == "running" and "3 cancelled" in answer.json()["message"]
    assert VM.objects.filter(parent=source).count() == 2  # the made one, and the one under way
    assert not SimDomain.objects.exclude(uuid__in=VM.objects.values("uuid")).exists()
    assert AuditEvent.objects.filter(action="task.cancel").count() == 1
    Task.objects.filter(pk=second.pk).update(status="queued")
    execute(str(second.uuid), second.attempts)  # the running one finishes
    parent.refresh_from_db()
    assert parent.status == "cancelled"
    assert parent.message == "cancelled: 2 of 5 done, 3 cancelled"
    assert VM.objects.filter(parent=source, power_state="off").count() == 2
    assert run_tasks() == []  # the cancelled children are not run: nothing is left queued


def test_cancel_of_an_ended_or_running_task_is_refused(source, actor, run_tasks, api):
    task = vms.request_clone(actor, source, "single")
    assert request_cancel(actor, task).status == "cancelled"
    assert not VM.objects.filter(name="single").exists()
    answer = api.post(f"/api/v1/tasks/{task.uuid}/cancel/")
    assert answer.status_code == 409 and "already ended (cancelled)" in answer.content.decode()
    running = vms.request_clone(actor, source, "other")
    Task.objects.filter(pk=running.pk).update(status="running")
    answer = api.post(f"/api/v1/tasks/{running.uuid}/cancel/")
    assert answer.status_code == 409 and "finishes" in answer.content.decode()

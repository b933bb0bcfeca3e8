"""Hosts of a cluster: heartbeats and the host check, per-host routing, maintenance, high availability
(services on the sim driver, in-process; tests/integration/test_cluster.py runs them across namespaces)."""

from datetime import timedelta

import pytest
from celery import current_app
from django.utils import timezone

from console.core.errors import Conflict
from console.core.models import SimDomain, Task
from console.core.tasks.reaper import fail_here, reap_stale
from console.models import VM, Host
from console.services import hosts, power, vms
from ngt.models import GuestTools
from tests.conftest import GiB


@pytest.fixture
def sent(monkeypatch):
    """Celery messages sent (name, args, queue), instead of a broker."""
    messages = []
    monkeypatch.setattr(current_app, "send_task",
                        lambda name, args=None, queue=None, **kw: messages.append((name, args, queue)))
    return messages


def make_vm(actor, run_tasks, name, host_name, power_on=True, **fields) -> VM:
    vms.request_create_vm(actor, vms.VMSpec(name=name, vcpus=1, memory_bytes=GiB, disk_sizes=[GiB], power_on=power_on,
                                            host=Host.objects.get(name=host_name)))
    run_tasks()
    VM.objects.filter(name=name).update(**fields)
    return VM.objects.get(name=name)


def silence(host_name: str, seconds: float) -> None:
    Host.objects.filter(name=host_name).update(worker_seen_at=timezone.now() - timedelta(seconds=seconds))


def test_a_silent_worker_makes_its_host_unreachable_and_fails_its_tasks(cluster, actor, run_tasks, settings):
    vm = make_vm(actor, run_tasks, "web-1", "host-1")
    GuestTools.objects.create(vm=vm, enabled=True, link_active=True)
    hosts.beat_workers(["host-1", "host-2"])
    waiting = power.request_power(actor, vm, "power-off")  # queued on host.host-1, whose worker then dies
    assert hosts.check_hosts() == {"unreachable": 0, "back": 0, "tasks_failed": 0}

    silence("host-1", settings.FACET_HOST_UNREACHABLE_SECONDS + 1)
    assert hosts.check_hosts() == {"unreachable": 1, "back": 0, "tasks_failed": 1}
    host, vm = Host.objects.get(name="host-1"), VM.objects.get(pk=vm.pk)
    assert host.state == "unreachable" and Host.objects.get(name="host-2").state == "ready"
    assert vm.power_state == "unknown" and vm.down_reason.startswith("host unreachable: the worker of host host-1")
    waiting.refresh_from_db()
    assert waiting.status == "failed" and waiting.error.startswith("host unreachable")
    assert not GuestTools.objects.get(vm=vm).link_active  # ngt's host hook, through the registry
    with pytest.raises(Conflict, match="host unreachable"):
        power.request_power(actor, vm, "power-on")
    with pytest.raises(Conflict, match="unreachable"):
        vms.place(cluster, host, 1, GiB)
    assert vms.place(cluster, None, 1, GiB).name == "host-2"

    hosts.beat_workers(["host-1"])  # the worker is back
    assert hosts.check_hosts()["back"] == 1
    assert Host.objects.get(name="host-1").state == "ready"
    hosts.reconcile_power_states()
    vm.refresh_from_db()
    assert (vm.power_state, vm.down_reason) == ("on", "")


def test_a_host_never_heard_from_is_not_judged(cluster):
    assert hosts.check_hosts()["unreachable"] == 0
    assert set(Host.objects.values_list("unreachable_since", flat=True)) == {None}


def test_high_availability_vms_restart_on_another_host_and_the_others_say_why_they_are_down(
        cluster, actor, run_tasks, settings):
    ha = make_vm(actor, run_tasks, "db-1", "host-1", high_availability=True)
    plain = make_vm(actor, run_tasks, "web-1", "host-1")
    lost_disks = make_vm(actor, run_tasks, "db-2", "host-1", high_availability=True)
    lost_disks.disks.get().path.unlink()  # its storage is not reachable from host-2
    hosts.beat_workers(["host-1", "host-2"])
    silence("host-1", settings.FACET_HOST_UNREACHABLE_SECONDS + 1)
    hosts.check_hosts()
    restarts = Task.objects.filter(kind="vm.restart-elsewhere")
    assert sorted(restarts.values_list("entity_name", "queue")) == [("db-1", "host.host-2"), ("db-2", "host.host-2")]
    run_tasks()
    ha.refresh_from_db()
    assert (ha.host.name, ha.power_state, ha.down_reason) == ("host-2", "on", "")
    assert SimDomain.objects.get(uuid=ha.uuid).host_name == "host-2"
    plain.refresh_from_db()
    assert plain.power_state == "unknown" and "host unreachable" in plain.down_reason
    lost_disks.refresh_from_db()
    assert lost_disks.host.name == "host-1" and "not restarted on host-2" in lost_disks.down_reason
    assert "cannot reach the disks" in restarts.get(entity_name="db-2").error


def test_maintenance_drains_the_host_and_takes_no_new_vms(cluster, actor, run_tasks):
    running = make_vm(actor, run_tasks, "web-1", "host-1")
    stopped = make_vm(actor, run_tasks, "web-2", "host-1", power_on=False)
    parent = hosts.request_enter_maintenance(actor, Host.objects.get(name="host-1"))
    host = Host.objects.get(name="host-1")
    assert host.state == "maintenance"
    assert set(parent.children.values_list("kind", "queue")) == {("vm.migrate", "host.host-1")}
    with pytest.raises(Conflict, match="maintenance"):
        vms.place(cluster, host, 1, GiB)
    assert vms.place(cluster, None, 1, GiB).name == "host-2"
    run_tasks()
    parent.refresh_from_db()
    assert parent.status == "succeeded"
    assert not host.vms.exists()
    running.refresh_from_db()
    stopped.refresh_from_db()
    assert (running.host.name, running.power_state, stopped.host.name) == ("host-2", "on", "host-2")
    assert SimDomain.objects.get(uuid=running.uuid).host_name == "host-2"
    hosts.leave_maintenance(actor, host)
    assert Host.objects.get(name="host-1").state == "ready"


def test_maintenance_is_refused_when_no_other_host_can_take_the_vms(cluster, actor, run_tasks):
    make_vm(actor, run_tasks, "web-1", "host-1")
    Host.objects.filter(name="host-2").update(maintenance=True)
    with pytest.raises(Conflict, match="no ready host"):
        hosts.request_enter_maintenance(actor, Host.objects.get(name="host-1"))
    assert not Host.objects.get(name="host-1").maintenance


def test_reconcile_runs_on_each_hosts_own_queue(cluster, actor, run_tasks, sent):
    make_vm(actor, run_tasks, "web-1", "host-1")
    make_vm(actor, run_tasks, "web-2", "host-2")
    assert hosts.reconcile_everywhere() == 2
    assert sorted(sent) == [("facet.vms.reconcile_host", ["host-1"], "host.host-1"),
                            ("facet.vms.reconcile_host", ["host-2"], "host.host-2")]


def test_the_reaper_hands_a_lost_tasks_undo_to_its_host(cluster, actor, sent, settings,
                                                        django_capture_on_commit_callbacks):
    settings.FACET_TASK_MAX_ATTEMPTS = 1
    task = vms.request_create_vm(actor, vms.VMSpec(name="web-1", vcpus=1, memory_bytes=GiB))
    old = timezone.now() - timedelta(seconds=settings.FACET_TASK_STALE_SECONDS + 1)
    Task.objects.filter(pk=task.pk).update(status="running", heartbeat_at=old)
    with django_capture_on_commit_callbacks(execute=True):
        reap_stale()
    name, args, queue = sent[-1]
    assert (name, queue) == ("facet.task.fail", task.queue) and task.queue.startswith("host.")
    task.refresh_from_db()
    assert task.status == "running"  # until that host's worker fails it, with the undo
    fail_here(*args)
    task.refresh_from_db()
    assert task.status == "failed" and "worker lost" in task.error
    assert not VM.objects.exists()  # the undo ran


def test_hosts_join_through_the_api_and_show_their_state(cluster, api, actor, run_tasks):
    answer = api.post("/api/v1/hosts/", {"name": "host-3", "driver_uri": "qemu+tls://h3.example.net/system"},
                      format="json")
    assert answer.status_code == 201, answer.json()
    assert (answer.json()["cluster"], answer.json()["state"]) == (str(cluster.uuid), "ready")
    refused = api.post("/api/v1/hosts/", {"name": "host-4", "driver_uri": "xen:///"}, format="json")
    assert refused.status_code == 400 and "driver_uri" in str(refused.json())
    make_vm(actor, run_tasks, "web-1", "host-1")
    host = Host.objects.get(name="host-1")
    started = api.post(f"/api/v1/hosts/{host.uuid}/enter-maintenance/")
    assert started.status_code == 202 and started.json()["kind"] == "host.maintenance"
    assert api.get(f"/api/v1/hosts/{host.uuid}/").json()["state"] == "maintenance"
    run_tasks()
    assert api.post(f"/api/v1/hosts/{host.uuid}/leave-maintenance/").json()["state"] == "ready"


def test_the_host_page_shows_capacity_vms_heartbeats_and_maintenance(cluster, client, admin, actor, run_tasks):
    make_vm(actor, run_tasks, "web-1", "host-1", high_availability=True)
    hosts.beat_workers(["host-1"])
    client.force_login(admin)
    host = Host.objects.get(name="host-1")
    page = client.get(f"/hosts/{host.uuid}/").content.decode()
    assert "web-1" in page and "sim://" in page and "ago (" in page and "Enter maintenance" in page
    assert "1.0 GiB running of 16.0 GiB" in page or "1 GiB running of 16 GiB" in page
    assert client.post(f"/hosts/{host.uuid}/maintenance/").status_code == 302
    assert "Leave maintenance" in client.get(f"/hosts/{host.uuid}/").content.decode()
    assert "host-1" in client.get("/hosts/").content.decode()

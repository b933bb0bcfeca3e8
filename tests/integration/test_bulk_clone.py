"""Bulk clone through a real redis-server and Celery worker on the sim driver: per-clone media, a worker
SIGKILLed in the middle and started again (exactly N clones), and cancel."""

from pathlib import Path

import pytest

from console.core.actors import Actor
from console.core.models import SimDomain, Task
from console.core.tasks.control import request_cancel
from console.models import VM, Host, Network, Nic
from console.services import vms
from console.services.bulk_clone import BulkCloneRequest, request_bulk_clone
from customization.services.lifecycle import CustomizationRequest
from tests.realparts import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
MiB = 1024**2
GiB = 1024**3
CLONES = 500  # killed in the middle of a job of this many
CLOUD_CONFIG = "#cloud-config\nwrite_files:\n  - path: /etc/motd\n    content: made by a bulk clone\n"


def template(cluster, actor, host: Host) -> VM:
    """A template with a small disk and a NIC with a static address (the network is widened to a /22, for
    the addresses of 500 clones)."""
    Network.objects.filter(name="lan").update(cidr="10.0.0.0/22", pool_end="10.0.3.250")
    task = vms.request_create_vm(actor, vms.VMSpec(
        name="golden", vcpus=1, memory_bytes=64 * MiB, disk_sizes=[MiB], host=host,
        nics=[vms.NicSpec(network=Network.objects.get(name="lan"), ip="auto")]))
    wait_for(lambda: Task.objects.get(pk=task.pk).ended, 60, "the template's create")
    VM.objects.filter(name="golden").update(is_template=True)
    return VM.objects.get(name="golden")


def bulk(source: VM, count: int, actor, **overrides) -> Task:
    table = "name,hostname,role\n" + "".join(f",node-{n},r{n}\n" for n in range(count))
    values = {"source": source, "count": count, "name_pattern": "web-{n:03}", "per_clone_csv": table,
              "power_on": True, "options": {"customization": CustomizationRequest(content=CLOUD_CONFIG)}}
    values.update(overrides)
    return request_bulk_clone(actor, BulkCloneRequest(**values))


def ended(task: Task, timeout: float) -> Task:
    wait_for(lambda: Task.objects.get(pk=task.pk).ended, timeout, f"{task.kind} to end", interval=0.2)
    task.refresh_from_db()
    return task


def assert_exactly(source: VM, count: int) -> list[VM]:
    """N clones, distinct names, MACs and addresses, one domain each, every file belonging to a clone, and
    no task left unended."""
    clones = list(VM.objects.filter(parent=source))
    assert len(clones) == count
    assert len({vm.name for vm in clones}) == count
    nics = Nic.objects.filter(vm__parent=source)
    assert nics.values("mac").distinct().count() == count and nics.values("ip").distinct().count() == count
    assert SimDomain.objects.filter(uuid__in=[vm.uuid for vm in clones]).count() == count
    storage_container = Path(source.disks.get().storage_container.path)
    directories = {p.name for p in (storage_container / "vms").iterdir()}
    assert directories == {str(vm.uuid) for vm in [*clones, source]}, "a directory of no VM is left"
    for vm in clones:
        assert sorted(p.name for p in (storage_container / "vms" / str(vm.uuid)).iterdir()) == [
            "customization.iso", "disk0.raw"], vm.name
    assert not Task.objects.exclude(status__in=Task.ENDED).exists()
    return clones


def test_fifty_clones_each_with_its_own_media(cluster, actor, celery_processes):
    celery_processes.worker()
    source = template(cluster, actor, Host.objects.get(name="host-1"))
    parent = ended(bulk(source, 50, actor), 180)
    assert parent.status == "succeeded", parent.error
    assert parent.message == "50 of 50 done"
    clones = assert_exactly(source, 50)
    for vm in clones:
        n = int(vm.name.split("-")[1])
        assert vm.hostname == f"node-{n - 1}" and vm.power_state == "on"
        media = Path(vm.customization.iso_path).read_bytes()
        assert str(vm.uuid).encode() in media  # its own instance id
        assert f'"hostname": "node-{n - 1}"'.encode() in media
        assert f'"role": "r{n - 1}"'.encode() in media
        assert b"made by a bulk clone" in media
    assert {vm.host.name for vm in clones} == {"host-1", "host-2"}
    assert Task.objects.filter(parent=parent, status="succeeded").count() == 50


def slow_cluster(cluster, delay: float = 0.05) -> Host:
    """One enabled host whose every hypervisor call takes `delay` seconds (so a job lasts long enough to kill
    or cancel it in the middle); the fixture's others are disabled."""
    Host.objects.update(enabled=False)
    return Host.objects.create(cluster=cluster, name="slow", driver_uri=f"sim://?delay={delay}", cpus=8,
                               memory_bytes=64 * GiB)


def test_a_worker_killed_in_the_middle_and_started_again_ends_with_exactly_n_clones(cluster, actor,
                                                                                    celery_processes):
    host = slow_cluster(cluster, delay=0.005)
    worker = celery_processes.worker()
    source = template(cluster, actor, host)
    parent = bulk(source, CLONES, actor)
    wait_for(lambda: Task.objects.filter(parent=parent, status="succeeded").count() >= 50, 120,
             "fifty clones made")
    celery_processes.kill(worker)
    done_before = Task.objects.filter(parent=parent, status="succeeded").count()
    assert done_before < CLONES, "the job ended before the kill: make it slower"

    celery_processes.worker()
    celery_processes.beat()
    parent = ended(parent, 240)
    assert parent.status == "succeeded", (parent.error, parent.message)
    assert_exactly(source, CLONES)
    assert Task.objects.filter(parent=parent, attempts__gt=1).exists()  # the reaper requeued what was lost


def test_cancel_keeps_what_is_made_and_drops_the_rest(cluster, actor, celery_processes):
    """A worker provisions a batch of ten clones together, from its claim to their end: the clones of the
    batches it has not started yet are the ones a cancel drops (80: more than its two threads' next batches)."""
    host = slow_cluster(cluster)
    celery_processes.worker()
    source = template(cluster, actor, host)
    parent = bulk(source, 80, actor)
    wait_for(lambda: Task.objects.filter(parent=parent, status="succeeded").count() >= 3, 120, "three clones made")
    request_cancel(Actor(user=actor.user), parent)
    parent = ended(parent, 120)
    children = Task.objects.filter(parent=parent)
    made, cancelled = children.filter(status="succeeded").count(), children.filter(status="cancelled").count()
    assert parent.status == "cancelled" and made >= 3 and cancelled > 0 and made + cancelled == 80
    assert parent.message == f"cancelled: {made} of 80 done, {cancelled} cancelled"
    assert_exactly(source, made)


def test_a_request_through_the_web_tier_reaches_the_broker_at_once(cluster, actor, celery_processes):
    """gunicorn (what `manage.py serve` runs) sends the tasks of a request itself; it used to reach no broker,
    and every task waited the reaper's 30 s."""
    import http.client
    import json
    import socket

    from console.core import access
    from console.services import processes

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    celery_processes.start("web", processes.web_command(port, workers=1), "Booting worker")
    key = access.create_token(actor, actor.user, "web")[1]
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("POST", "/api/v1/vms/", body=json.dumps({"name": "via-web", "vcpus": 1,
                                                                "memory_bytes": 64 * MiB}),
                       headers={"Authorization": f"Token {key}", "Content-Type": "application/json"})
    answer = connection.getresponse()
    assert answer.status == 202, answer.read()
    task = Task.objects.get(uuid=json.loads(answer.read())["uuid"])
    wait_for(lambda: Task.objects.get(pk=task.pk).celery_id, 5, "the task's message to reach the broker")

"""Hosts of a cluster: their workers' heartbeats, the check that finds a host whose worker stopped answering
(its VMs' state unknown, its tasks failed, its high-availability VMs restarted elsewhere), per-host work,
and maintenance (a host drained of its VMs and given no new ones).

Every host runs a Celery worker on its queue `host.NAME`; work that touches a VM's domain or disk files runs
there. What runs on `default` (beat's jobs) only hands each host its share."""

import logging
from datetime import timedelta

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from console.core import audit
from console.core.actors import Actor
from console.core.drivers import driver_for
from console.core.errors import Conflict, InvalidRequest, ServiceError
from console.core.models import Task
from console.core.registry import registry
from console.core.tasks import Progress, create_task, end_from_outside, sending_together, start_bulk, task_kind

from ..models import VM, Host
from .power import BUSY_STATES
from .vms import tell_powered

log = logging.getLogger(__name__)
UNREACHABLE = "host unreachable"
Status = Task.Status


# --- Heartbeats and the host check --------------------------------------------------------------------
def beat_workers(host_names: list[str]) -> None:
    """A worker serving these hosts' queues is alive (its heartbeat thread calls this every few seconds)."""
    if host_names:
        Host.objects.filter(name__in=host_names).update(worker_seen_at=timezone.now())


def beat_guest_tools(host_name: str) -> None:
    Host.objects.filter(name=host_name).update(guest_tools_seen_at=timezone.now())


def check_hosts() -> dict[str, int]:
    """Beat's host check (every FACET_HOST_CHECK_SECONDS): a host whose worker has been silent for
    FACET_HOST_UNREACHABLE_SECONDS becomes unreachable, one that answers again is back; the queued and
    running tasks of unreachable hosts fail. A host whose worker was never heard from is left alone (it
    is being installed)."""
    silent_since = timezone.now() - timedelta(seconds=settings.FACET_HOST_UNREACHABLE_SECONDS)
    lost = back = 0
    for host in Host.objects.filter(unreachable_since__isnull=True, worker_seen_at__lt=silent_since):
        lost += mark_unreachable(host)
    for host in Host.objects.filter(unreachable_since__isnull=False, worker_seen_at__gte=silent_since):
        back += mark_reachable(host)
    return {"unreachable": lost, "back": back, "tasks_failed": fail_tasks_of_unreachable_hosts()}


def mark_unreachable(host: Host) -> int:
    silence = (timezone.now() - host.worker_seen_at).total_seconds()
    reason = f"{UNREACHABLE}: the worker of host {host.name} has not answered for {silence:.0f} s"
    with transaction.atomic():
        if not Host.objects.filter(pk=host.pk, unreachable_since__isnull=True).update(
                unreachable_since=timezone.now()):
            return 0  # another check got there first
        old_state = host.state
        highly_available = list(host.vms.filter(high_availability=True, is_template=False,
                                                power_state=VM.PowerState.ON).select_related("cluster", "host"))
        host.vms.update(power_state=VM.PowerState.UNKNOWN, down_reason=reason)
        audit.record(Actor.system(), "host.unreachable", host, entity_type="host", reason=reason)
        host.refresh_from_db()
        for restart in highly_available:
            request_restart_elsewhere(restart, host, reason)
    log.warning("%s; its VMs' power state is unknown", reason)
    for changed in registry.host_hooks_named("state_changed"):
        changed(host, old_state, host.state)
    return 1


def mark_reachable(host: Host) -> int:
    with transaction.atomic():
        if not Host.objects.filter(pk=host.pk, unreachable_since__isnull=False).update(unreachable_since=None):
            return 0
        audit.record(Actor.system(), "host.reachable", host, entity_type="host")
    host.refresh_from_db()
    log.info("the worker of host %s answers again; the next reconcile reads its VMs' power states", host.name)
    for changed in registry.host_hooks_named("state_changed"):
        changed(host, Host.State.UNREACHABLE, host.state)
    return 1


def fail_tasks_of_unreachable_hosts() -> int:
    """Fail what waits on (or ran on) an unreachable host's queue, rather than leave it waiting for a worker
    that may never come back. Their undo steps are not run: those would run on that host. A rerun, once
    the host is back, finishes the work."""
    failed = 0
    for host in Host.objects.filter(unreachable_since__isnull=False):
        waiting = Task.objects.filter(queue=host.queue, status__in=[Status.QUEUED, Status.RUNNING],
                                      children__isnull=True)
        for task in waiting:
            failed += end_from_outside(task, Status.FAILED, error=f"{UNREACHABLE}: host {host.name} stopped "
                                                                    "answering; nothing was undone there. Rerun it "
                                                                    "once the host is back.")
    return failed


# --- Per-host power reconcile ----------------------------------------------------------------------------
def reconcile_everywhere() -> int:
    """Beat's reconcile: each reachable host reads its own VMs' states, on its own worker."""
    hosts = list(Host.objects.filter(enabled=True, unreachable_since__isnull=True).annotate(
        vm_count=Count("vms")).filter(vm_count__gt=0))
    for host in hosts:
        current_app.send_task("facet.vms.reconcile_host", args=[host.name], queue=host.queue)
    return len(hosts)


def reconcile_power_states() -> int:
    """Every reachable host's reconcile, in this process (tests; a one-machine installation's worker)."""
    return sum(reconcile_host(name) for name in Host.objects.filter(
        enabled=True, unreachable_since__isnull=True).values_list("name", flat=True))


def reconcile_host(host_name: str) -> int:
    """Bring one host's VMs' power states in line with what its hypervisor reports; returns changes."""
    host = Host.objects.filter(name=host_name, enabled=True, unreachable_since__isnull=True).first()
    if host is None:
        return 0
    vms = list(host.vms.exclude(power_state__in=BUSY_STATES).select_related("host")
               .only("id", "uuid", "name", "power_state", "down_reason", "host"))
    if not vms:
        return 0
    states = driver_for(vms[0]).states(vms)
    changed: list[tuple[VM, str]] = []
    for vm in vms:
        actual = states.get(vm.uuid, VM.PowerState.UNKNOWN)
        # Only rows nobody touched meanwhile change: the filter on the old state makes this safe.
        if VM.objects.filter(pk=vm.pk, power_state=vm.power_state).exclude(
                power_state=actual).update(power_state=actual, down_reason=""):
            changed.append((vm, actual))
        elif vm.down_reason and actual != VM.PowerState.UNKNOWN:
            VM.objects.filter(pk=vm.pk).update(down_reason="")
    tell_powered(changed)  # e.g. a guest that shut itself down after its first boot
    return len(changed)


# --- Moving VMs: maintenance and high availability ---------------------------------------------------------
def plan_targets(vms: list[VM], leaving: Host) -> dict[int, Host]:
    """A ready host for each VM, spreading them as placement would, counting the VMs planned so far."""
    hosts = list(Host.objects.filter(cluster=leaving.cluster, enabled=True, maintenance=False,
                                     unreachable_since__isnull=True).exclude(pk=leaving.pk))
    if not hosts:
        return {}
    from .vms import memory_in_use

    free = {host.pk: host.memory_bytes - memory_in_use(host) for host in hosts}
    count = dict(Host.objects.filter(pk__in=free).annotate(n=Count("vms")).values_list("pk", "n"))
    plan = {}
    for vm in vms:
        fits = [host for host in hosts if host.cpus >= vm.vcpus and host.memory_bytes >= vm.memory_bytes]
        if not fits:
            continue
        target = max(fits, key=lambda host: (free[host.pk], -count[host.pk]))
        plan[vm.pk] = target
        count[target.pk] += 1
        if vm.power_state == VM.PowerState.ON:
            free[target.pk] -= vm.memory_bytes
    return plan


def request_enter_maintenance(actor: Actor, host: Host) -> Task:
    """The host takes no new VMs from now on and each of its VMs moves to a ready host (a parent task with a
    `vm.migrate` child per VM, run on this host's worker). Refused, with nothing changed, when a VM has
    nowhere to go."""
    if host.unreachable_since is not None:
        raise Conflict({"host": [f"{UNREACHABLE}: host {host.name} cannot move its VMs away"]})
    vms = list(host.vms.select_related("cluster", "host"))
    busy = [vm.name for vm in vms if vm.power_state in BUSY_STATES]
    if busy:
        raise Conflict({"host": [f"VMs of host {host.name} are being created or deleted ({', '.join(busy[:5])}); "
                                 "wait for them to finish"]})
    plan = plan_targets(vms, host)
    homeless = [vm.name for vm in vms if vm.pk not in plan]
    if homeless:
        raise Conflict({"host": [f"no ready host of cluster {host.cluster.name} can take "
                                 f"{', '.join(homeless[:5])}{' ...' if len(homeless) > 5 else ''}"]})
    with transaction.atomic(), sending_together():
        Host.objects.filter(pk=host.pk).update(maintenance=True)
        parent = create_task(actor, "host.maintenance", host, enqueue=False, params={"count": len(vms)})
        for vm in vms:
            create_task(actor, "vm.migrate", vm, queue=host.queue, parent=parent,
                        params={"target": plan[vm.pk].name, "reason": f"host {host.name} entered maintenance"})
        start_bulk(parent)
        audit.record(actor, "host.maintenance.enter", host, entity_type="host", task=str(parent.uuid))
    host.refresh_from_db()
    for changed in registry.host_hooks_named("state_changed"):
        changed(host, Host.State.READY, host.state)
    return parent


def leave_maintenance(actor: Actor, host: Host) -> Host:
    if not host.maintenance:
        raise Conflict({"host": [f"host {host.name} is not in maintenance"]})
    with transaction.atomic():
        Host.objects.filter(pk=host.pk).update(maintenance=False)
        audit.record(actor, "host.maintenance.leave", host, entity_type="host")
    host.refresh_from_db()
    for changed in registry.host_hooks_named("state_changed"):
        changed(host, Host.State.MAINTENANCE, host.state)
    return host


@task_kind("vm.migrate", label="Migrate VM")
def run_migrate(task: Task, progress: Progress) -> str:
    """On the VM's current host: live migration while it runs (a move on sim), else its definition moves."""
    vm = VM.objects.select_related("host").filter(uuid=task.entity_uuid).first()
    if vm is None:
        return "the VM no longer exists"
    target = Host.objects.get(name=task.params["target"])
    if vm.host_id == target.pk:
        return f"{vm.name} is on {target.name}"
    source = vm.host
    progress(10, f"Moving to {target.name}")
    driver_for(vm).migrate(vm, target)
    VM.objects.filter(pk=vm.pk).update(host=target)
    vm.host = target
    for moved in registry.host_hooks_named("vm_moved"):
        moved(vm, source)
    return f"{vm.name} moved from {source.name} to {target.name}"


def request_restart_elsewhere(vm: VM, failed: Host, reason: str) -> Task | None:
    """A high-availability VM of a failed host is started on a ready host, whose worker first checks that it
    reaches the VM's disks. No ready host: it stays down, saying so."""
    target = plan_targets([vm], failed).get(vm.pk)
    if target is None:
        VM.objects.filter(pk=vm.pk).update(down_reason=f"{reason}; no ready host can restart it")
        return None
    return create_task(Actor.system(), "vm.restart-elsewhere", vm, queue=target.queue,
                       params={"target": target.name, "failed_host": failed.name, "reason": reason})


def undo_restart_elsewhere(task: Task) -> None:
    VM.objects.filter(uuid=task.entity_uuid).update(
        down_reason=f"{task.params['reason']}; not restarted on {task.params['target']} (task {task.uuid} says why)")


@task_kind("vm.restart-elsewhere", undo=undo_restart_elsewhere, label="Restart VM on Another Host")
def run_restart_elsewhere(task: Task, progress: Progress) -> str:
    vm = VM.objects.select_related("host", "cluster").filter(uuid=task.entity_uuid).first()
    if vm is None:
        return "the VM no longer exists"
    target = Host.objects.get(name=task.params["target"])
    if vm.host_id == target.pk and vm.power_state == VM.PowerState.ON:
        return f"{vm.name} runs on {target.name}"
    unreachable = [str(disk.path) for disk in vm.disks.select_related("storage_container") if not disk.path.is_file()]
    if unreachable:
        raise ServiceError(f"host {target.name} cannot reach the disks of VM {vm.name}: {', '.join(unreachable[:3])}")
    failed = vm.host
    progress(20, f"Defining {vm.name} on {target.name}")
    vm.host = target
    driver = driver_for(vm)
    driver.create(vm)
    progress(60, "Powering on")
    state = driver.power(vm, "power-on")
    VM.objects.filter(pk=vm.pk).update(host=target, power_state=state, down_reason="")
    tell_powered([(vm, state)])
    for moved in registry.host_hooks_named("vm_moved"):
        moved(vm, failed)
    return f"{vm.name} restarted on {target.name} after {task.params['reason']}"


# --- Adding hosts -------------------------------------------------------------------------------------------
DRIVER_SCHEMES = ("sim://", "qemu:///system", "qemu+ssh://", "qemu+tls://", "test:///")


def check_driver_uri(uri: str) -> str:
    if not uri.startswith(DRIVER_SCHEMES):
        raise InvalidRequest({"driver_uri": [f"{uri!r} is no driver URI Facet knows; use one of "
                                             f"{', '.join(DRIVER_SCHEMES)}..."]})
    return uri


def hosts_in_state(state: str):
    """The hosts in one of `Host.State` (a filter of the API and the hosts page)."""
    if state == Host.State.UNREACHABLE:
        return Q(unreachable_since__isnull=False)
    if state == Host.State.MAINTENANCE:
        return Q(unreachable_since__isnull=True, maintenance=True)
    return Q(unreachable_since__isnull=True, maintenance=False)

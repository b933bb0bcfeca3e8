"""Power actions, and the reconcile that reads power state back from the hypervisors."""

from django.db import transaction

from console.core import audit
from console.core.actors import Actor
from console.core.drivers import driver_for
from console.core.drivers.base import POWER_TRANSITIONS
from console.core.errors import Conflict, InvalidRequest
from console.core.models import Task
from console.core.registry import registry
from console.core.tasks import Progress, create_task, task_kind

from ..models import VM, Host
from .vms import tell_powered

BUSY_STATES = (VM.PowerState.CREATING, VM.PowerState.DELETING)


class AlreadyDone(Conflict):
    """The VM is already where the action would take it (a bulk action counts it as done)."""


def check_power_action(vm: VM, action: str) -> None:
    if action not in POWER_TRANSITIONS:
        known = ", ".join([*POWER_TRANSITIONS, *registry.power_actions])
        raise InvalidRequest({"action": [f"unknown power action {action!r}; use one of {known}"]})
    if vm.is_template:
        raise Conflict({"action": [f"{vm.name} is a template; clone it to get a VM that can run"]})
    if vm.power_state in BUSY_STATES:
        raise Conflict({"action": [f"VM {vm.name} is {vm.power_state}; wait for it to finish"]})
    allowed, result = POWER_TRANSITIONS[action]
    if vm.power_state == result and action in ("power-on", "power-off", "shutdown"):
        raise AlreadyDone({"action": [f"VM {vm.name} is already {result}"]})
    if vm.power_state not in allowed and vm.power_state != VM.PowerState.UNKNOWN:
        raise Conflict({"action": [f"cannot {action} VM {vm.name} while it is {vm.power_state}"]})


def request_power(actor: Actor, vm: VM, action: str, parent: Task | None = None) -> Task:
    if action in registry.power_actions and parent is None:  # carried out by another app (the guest's agent)
        return registry.power_actions[action].request(actor, vm)
    check_power_action(vm, action)
    with transaction.atomic():
        task = create_task(actor, "vm.power", vm, queue=vm.host.queue, parent=parent, params={"action": action})
        if parent is None:
            audit.record(actor, f"vm.{action}", vm, task=str(task.uuid))
    return task


@task_kind("vm.power", discard=lambda task: None)  # its request wrote nothing to drop
def run_power(task: Task, progress: Progress) -> str:
    vm = VM.objects.select_related("host").filter(uuid=task.entity_uuid).first()
    if vm is None:
        raise Conflict("the VM no longer exists")
    action = task.params["action"]
    progress(10, f"Sending {action}")
    state = driver_for(vm).power(vm, action)
    VM.objects.filter(pk=vm.pk).update(power_state=state)
    tell_powered([(vm, state)])
    return f"{vm.name} is {state}"


def reconcile_power_states() -> int:
    """Bring the inventory's power states in line with what each hypervisor reports; returns changes."""
    changed = 0
    changed_vms: list[tuple[VM, str]] = []
    for host in Host.objects.filter(enabled=True):
        vms = list(host.vms.exclude(power_state__in=BUSY_STATES).only("id", "uuid", "name", "power_state", "host"))
        if not vms:
            continue
        states = driver_for(vms[0]).states(vms)
        for vm in vms:
            actual = states.get(vm.uuid, VM.PowerState.UNKNOWN)
            # Only rows nobody touched meanwhile change: the filter on the old state makes this safe.
            if VM.objects.filter(pk=vm.pk, power_state=vm.power_state).exclude(
                    power_state=actual).update(power_state=actual):
                changed += 1
                changed_vms.append((vm, actual))
    tell_powered(changed_vms)  # e.g. a guest that shut itself down after its first boot
    return changed

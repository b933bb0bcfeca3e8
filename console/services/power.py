"""Power actions (the reconcile that reads power states back from the hypervisors is per host: hosts.py)."""

from django.db import transaction

from console.core import audit
from console.core.actors import Actor
from console.core.drivers import driver_for
from console.core.drivers.base import POWER_TRANSITIONS
from console.core.errors import Conflict, InvalidRequest
from console.core.models import Task
from console.core.registry import registry
from console.core.tasks import Progress, create_task, task_kind

from ..models import VM
from .vms import tell_powered, vm_of_task

BUSY_STATES = (VM.PowerState.CREATING, VM.PowerState.DELETING)

# What pages call the inventory's power actions, and what each does (a tooltip); the API and CLI keep the
# words. Other apps' power actions carry theirs in `registry.power_actions` (the guest's own shutdown).
POWER_LABELS = {
    "power-on": ("Power On", "Start the VM."),
    "power-off": ("Power Off", "Cut the power at once, as pulling the plug: the guest cannot save its work."),
    "shutdown": ("Shut Down (ACPI)", "Press the power button: a guest that listens to ACPI shuts down cleanly."),
    "reset": ("Reset", "Press the reset button: the VM restarts at once, without the guest's own shutdown."),
    "reboot": ("Reboot (ACPI)", "Ask the guest to restart through ACPI, as a short press of the power button."),
    "pause": ("Pause", "Stop the guest's vCPUs where they are; its memory stays, and Resume goes on from there."),
    "resume": ("Resume", "Let a paused VM run again from where it stopped."),
}


def power_label(action: str) -> str:
    """The label of any power action, the inventory's or another app's; the word itself when unknown."""
    if action in POWER_LABELS:
        return POWER_LABELS[action][0]
    registered = registry.power_actions.get(action)
    return registered.label if registered else action


def offered_power_actions(vm: VM) -> list[tuple[str, str, str]]:
    """(action, label, tooltip) of the power actions the VM page offers for the VM's current state."""
    offered = [(action, *POWER_LABELS[action]) for action, (states, _) in POWER_TRANSITIONS.items()
               if vm.power_state in states]
    return offered + [(action, entry.label, entry.tooltip) for action, entry in registry.power_actions.items()
                      if entry.offered(vm)]


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
    if vm.host is not None and vm.host.unreachable_since is not None:
        raise Conflict({"action": [f"host unreachable: host {vm.host.name} of VM {vm.name} does not answer"]})
    allowed, result = POWER_TRANSITIONS[action]
    if vm.power_state == result and action in ("power-on", "power-off", "shutdown", "pause", "resume"):
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


@task_kind("vm.power", label="Change power state", discard=lambda task: None)  # its request wrote nothing to drop
def run_power(task: Task, progress: Progress) -> str:
    vm = vm_of_task(task)
    action = task.params["action"]
    progress(10, f"Sending {action}")
    state = driver_for(vm).power(vm, action)
    VM.objects.filter(pk=vm.pk).update(power_state=state)
    tell_powered([(vm, state)])
    return f"{vm.name} is {state}"

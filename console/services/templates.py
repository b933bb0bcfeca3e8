"""A powered-off VM becomes a template (the golden image clones are made from) and a template becomes a VM
again. The VM is marked at request time, so that nothing powers it on meanwhile; the task tells the apps
(`VMHooks.made_template`: Guest Tools revokes the VM's certificate and removes its tools ISO, while the agent
installed in its disk stays for the clones)."""

from django.db import transaction

from console.core import audit
from console.core.actors import Actor
from console.core.errors import Conflict
from console.core.models import Task
from console.core.registry import registry
from console.core.tasks import Progress, create_task, task_kind

from ..models import VM
from .vms import vm_of_task

ACTIVE = (Task.Status.QUEUED, Task.Status.RUNNING)


def _start(actor: Actor, kind: str, vm: VM, is_template: bool) -> Task:
    """Mark the VM (or unmark it) and write its task, once no other task works on it."""
    busy = Task.objects.filter(entity_uuid=vm.uuid, status__in=ACTIVE).order_by("id").first()
    if busy is not None:
        raise Conflict({"vm": [f"a task ({busy.kind}) is {busy.status} on {vm.name}; wait for it to end"]})
    with transaction.atomic():
        # Only the state this request saw: a power-on or another change in between refuses it.
        changed = VM.objects.filter(pk=vm.pk, is_template=not is_template, power_state=vm.power_state).update(
            is_template=is_template)
        if not changed:
            raise Conflict({"vm": [f"{vm.name} changed meanwhile; look at it again"]})
        task = create_task(actor, kind, vm, queue=vm.host.queue if vm.host else "default")
        audit.record(actor, kind, vm, task=str(task.uuid))
    return task



def request_make_template(actor: Actor, vm: VM) -> Task:
    if vm.is_template:
        raise Conflict({"vm": [f"{vm.name} is already a template"]})
    if vm.power_state != VM.PowerState.OFF:
        raise Conflict({"vm": [f"VM {vm.name} is {vm.power_state}: power it off (shut the guest down) before "
                               "making it a template"]})
    return _start(actor, "vm.make-template", vm, is_template=True)


def undo_make_template(task: Task) -> None:
    VM.objects.filter(uuid=task.entity_uuid).update(is_template=False)


@task_kind("vm.make-template", undo=undo_make_template, label="Make Template")
def run_make_template(task: Task, progress: Progress) -> str:
    vm = vm_of_task(task)
    notes = []
    for made_template in registry.hooks("made_template"):
        progress(50, "Removing what belongs to this VM alone")
        if note := made_template(vm):
            notes.append(note)
    return f"{vm.name} is a template" + "".join(f"; {note}" for note in notes)


def request_make_vm(actor: Actor, vm: VM) -> Task:
    if not vm.is_template:
        raise Conflict({"vm": [f"{vm.name} is a VM, not a template"]})
    return _start(actor, "vm.make-vm", vm, is_template=False)


def undo_make_vm(task: Task) -> None:
    VM.objects.filter(uuid=task.entity_uuid).update(is_template=True)


@task_kind("vm.make-vm", undo=undo_make_vm, label="Make VM")
def run_make_vm(task: Task, progress: Progress) -> str:
    return f"{vm_of_task(task).name} is a VM again"

"""Guest Tools operations. The request functions validate, write the intent (state, CD-ROM slot) and the task;
the task kinds below do the work in a worker: issue the VM's certificate, build its tools ISO, insert it.

A VM's private key is made inside `run_mount`, in the worker, and goes straight into the ISO: it is never in
a task's params, a log line, the database or a temporary file."""

import functools
import time
import uuid
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from console.core import audit
from console.core.actors import Actor
from console.core.drivers import driver_for
from console.core.errors import Conflict, InvalidRequest
from console.core.models import Task
from console.core.tasks import Progress, create_task, task_kind
from console.models import VM, CdRom, Cluster, StorageContainer
from console.services.cdroms import free_slot
from console.services.power import BUSY_STATES
from console.services.vms import tell_powered, vm_of_task
from ngt.services import authority, tools_iso

from ..daemon import commands
from ..models import CAPABILITIES, TOOLS_VERSION, GuestTools, VMCertificate

GUEST_TOOLS = CdRom.Purpose.GUEST_TOOLS
ISO_DIRECTORY = "guest-tools"
KINDS = ("ngt.enable", "ngt.mount", "ngt.unmount", "ngt.disable")
ACTIVE = (Task.Status.QUEUED, Task.Status.RUNNING)


def state_of(vm: VM) -> GuestTools:
    """The VM's Guest Tools state as stored, or a blank one (not saved) when it never had any."""
    return GuestTools.objects.select_related("certificate").filter(vm=vm).first() or GuestTools(vm=vm)


def checked_capabilities(names: list[str]) -> list[str]:
    unknown = [name for name in names if name not in CAPABILITIES]
    if unknown:
        raise InvalidRequest({"capabilities": [
            f"unknown capability {name!r}; use {' or '.join(CAPABILITIES)}" for name in unknown]})
    return [name for name in CAPABILITIES if name in names]  # one order, no repeats


def _check_vm(vm: VM) -> None:
    if vm.power_state in BUSY_STATES:
        raise Conflict({"vm": [f"VM {vm.name} is {vm.power_state}; wait for it to finish"]})
    if vm.host_id is None:
        raise Conflict({"vm": [f"VM {vm.name} is not placed on a host"]})


def _locked_state(vm: VM) -> GuestTools:
    """The state row, locked for this transaction, after refusing a second Guest Tools task on the VM: two
    mounts at once would issue two certificates for one slot."""
    state, _ = GuestTools.objects.select_for_update().get_or_create(vm=vm)
    busy = Task.objects.filter(entity_uuid=vm.uuid, kind__in=KINDS, status__in=ACTIVE).first()
    if busy is not None:
        raise Conflict({"vm": [f"a Guest Tools task ({busy.kind}) is already {busy.status} on VM {vm.name}; "
                               "wait for it to end"]})
    return state


def _start(actor: Actor, kind: str, vm: VM, params: dict, parent: Task | None = None) -> Task:
    task = create_task(actor, kind, vm, queue=vm.host.queue, parent=parent, params=params)
    if parent is None:  # a bulk task is audited once, as a whole
        audit.record(actor, kind, vm, task=str(task.uuid), **params)
    return task


def check_authority(cluster: Cluster) -> None:
    """Fail the request, not the task, when the CA cannot sign (its key file missing or damaged)."""
    authority.open_authority(authority.authority_for(cluster))


@functools.lru_cache(maxsize=64)
def _check_authority_once(bulk_uuid: uuid.UUID, cluster: Cluster) -> None:
    """A bulk mount checks the CA on its first VM only (a failure is not cached: every VM then says why)."""
    check_authority(cluster)


def set_capabilities(actor: Actor, vm: VM, names: list[str]) -> GuestTools:
    """Store the capabilities; the next mount delivers them in ngt.json."""
    capabilities = checked_capabilities(names)
    with transaction.atomic():
        state, _ = GuestTools.objects.get_or_create(vm=vm)
        before = state.capabilities
        state.capabilities = capabilities
        state.save(update_fields=["capabilities", "updated_at"])
        audit.record(actor, "ngt.capabilities", vm, before=before, after=capabilities)
    return state


def request_enable(actor: Actor, vm: VM) -> Task:
    _check_vm(vm)
    with transaction.atomic():
        state = _locked_state(vm)
        was_enabled, state.enabled = state.enabled, True
        state.save(update_fields=["enabled", "updated_at"])
        return _start(actor, "ngt.enable", vm, {"was_enabled": was_enabled})


def undo_enable(task: Task) -> None:
    GuestTools.objects.filter(vm__uuid=task.entity_uuid).update(enabled=task.params["was_enabled"])


@task_kind("ngt.enable", undo=undo_enable, label="Enable Guest Tools")
def run_enable(task: Task, progress: Progress) -> str:
    vm = vm_of_task(task)
    progress(30, "Preparing the certificate authority")
    check_authority(vm.cluster)  # made on first use; a key that does not open fails the task here
    return f"Guest Tools enabled on {vm.name}"


def storage_container_of(vm: VM) -> StorageContainer:
    disk = next(iter(vm.disks.all()), None)  # the first by index (the model's order), prefetched in a batch
    storage_container = disk.storage_container if disk else vm.cluster.storage_containers.order_by("id").first()
    if storage_container is None:
        raise Conflict({"vm": [f"VM {vm.name} has no storage container to hold its tools ISO"]})
    return storage_container


def new_iso_path(vm: VM) -> Path:
    """Where a new tools ISO of the VM goes: beside its first disk, named so that no two ISOs share a name."""
    return storage_container_of(vm).resolve(f"{ISO_DIRECTORY}/{vm.uuid}-{uuid.uuid4().hex[:12]}.iso")


def _tools_cdrom(vm: VM) -> CdRom | None:
    return vm.cdroms.filter(purpose=GUEST_TOOLS).exclude(iso_path="").order_by("slot").first()


def request_mount(actor: Actor, vm: VM, config_only: bool = False, parent: Task | None = None) -> Task:
    """Mount a new tools ISO (implies enable); on a remount the ISO carries a new pair and the old one is
    revoked when the new one is issued."""
    if vm.is_template:
        raise Conflict({"vm": [f"{vm.name} is a template, and templates do not run: mount Guest Tools on the VM "
                               "before marking it as a template, or on its clones"]})
    _check_vm(vm)
    if parent is None:
        check_authority(vm.cluster)
    else:
        _check_authority_once(parent.uuid, vm.cluster)
    path = new_iso_path(vm)
    with transaction.atomic():
        state = _locked_state(vm)
        cdrom = _tools_cdrom(vm) or free_slot(vm, GUEST_TOOLS)
        previous_iso = cdrom.iso_path
        cdrom.iso_path, cdrom.purpose, cdrom.image = str(path), GUEST_TOOLS, None
        cdrom.save()
        was_enabled, state.enabled = state.enabled, True
        state.save(update_fields=["enabled", "updated_at"])
        return _start(actor, "ngt.mount", vm, parent=parent, params={
            "slot": cdrom.slot, "iso_path": str(path), "previous_iso": previous_iso, "config_only": config_only,
            "was_enabled": was_enabled})



def revoke_current(vm: VM) -> list[str]:
    """Revoke the VM's valid certificates now; returns their serials."""
    current = list(VMCertificate.objects.filter(vm=vm, revoked=False).values_list("serial", flat=True))
    VMCertificate.objects.filter(vm=vm, revoked=False).update(revoked=True, revoked_at=timezone.now())
    return current


def new_tools_files(vm: VM, signer: authority.Signer, capabilities: list[str], config_only: bool) -> tuple[
        authority.IssuedCertificate, dict[str, bytes]]:
    """A new key pair, its certificate, and the ISO's files that carry them: the private key exists only in
    this memory and, once built, in the ISO."""
    key = ec.generate_private_key(ec.SECP256R1())
    issued = authority.issue(signer, vm, key.public_key())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    config = tools_iso.ngt_config(
        vm_uuid=str(vm.uuid), cluster_vip=vm.cluster.virtual_ip or settings.CLUSTER_VIP,
        ca_fingerprint=signer.authority.fingerprint_sha256, certificate_serial=issued.serial,
        capabilities=capabilities, tools_version=TOOLS_VERSION)
    installer = {} if config_only else tools_iso.installer_files(guest_tools_packages())
    return issued, tools_iso.tools_files(config, signer.certificate_pem, issued.pem, key_pem, installer)


def guest_tools_packages() -> Path:
    """Where `make guest-tools-packages` puts the agent's installer tree, on each host that builds tools ISOs."""
    return Path(settings.DATA_DIR) / "packages" / "guest-tools"


def _mounted_by(task: Task, state: GuestTools, path: Path) -> bool:
    certificate = state.certificate
    return bool(state.iso_mounted and certificate and certificate.task_uuid == task.uuid and path.is_file())


def _record(task: Task, action: str, vm: VM, **detail) -> None:
    """Audit what a worker did, in the name of who asked for it."""
    audit.record(Actor(user=task.created_by), action, vm, task=str(task.uuid), **detail)


def undo_mount(task: Task) -> None:
    """A mount that failed for good gives the CD-ROM back as it was and leaves no ISO behind."""
    state = GuestTools.objects.select_related("certificate").filter(vm__uuid=task.entity_uuid).first()
    if state is None or (state.certificate and state.certificate.task_uuid == task.uuid):
        return  # the VM is gone, or the mount took effect before something after it failed
    tools_iso.remove_iso(Path(task.params["iso_path"]))
    previous = task.params.get("previous_iso", "")
    CdRom.objects.filter(vm__uuid=task.entity_uuid, slot=task.params["slot"]).update(
        iso_path=previous, purpose=GUEST_TOOLS if previous else "", image=None)
    if not task.params["was_enabled"]:
        GuestTools.objects.filter(pk=state.pk).update(enabled=False)


@task_kind("ngt.mount", undo=undo_mount, label="Mount Guest Tools")
def run_mount(task: Task, progress: Progress) -> str:
    vm = vm_of_task(task)
    state = GuestTools.objects.select_related("certificate").get(vm=vm)
    path, slot = Path(task.params["iso_path"]), task.params["slot"]
    driver = driver_for(vm)
    if _mounted_by(task, state, path):  # a rerun after the work was done: only make sure it is inserted
        driver.insert_cdrom(vm, slot, path)
        return f"Guest Tools ISO already mounted in CD-ROM {slot} of {vm.name}"
    progress(10, "Opening the certificate authority")
    signer = authority.open_authority(authority.authority_for(vm.cluster))
    progress(30, "Issuing a certificate and building the tools ISO")
    issued, files = new_tools_files(vm, signer, state.capabilities, task.params.get("config_only", False))
    image = tools_iso.build_iso(files)
    progress(60, f"Writing the tools ISO and inserting it in CD-ROM {slot}")
    try:
        # Written (and synced) before the transaction, which other workers wait for: nothing refers to the
        # file until the transaction commits, and it is removed if that never happens.
        tools_iso.write_iso(path, image)
        with transaction.atomic():
            revoked = revoke_current(vm)
            certificate = VMCertificate.objects.create(
                vm=vm, serial=issued.serial, certificate_pem=issued.pem, not_before=issued.not_before,
                not_after=issued.not_after, task_uuid=task.uuid)
            GuestTools.objects.filter(pk=state.pk).update(enabled=True, iso_mounted=True, certificate=certificate,
                                                          updated_at=timezone.now())
            # Again, for a rerun of a mount whose failure gave the slot back.
            CdRom.objects.filter(vm=vm, slot=slot).update(iso_path=str(path), purpose=GUEST_TOOLS, image=None)
            driver.insert_cdrom(vm, slot, path)
    except BaseException:
        tools_iso.remove_iso(path)  # the database rolled back: no ISO may outlive it
        raise
    previous = task.params.get("previous_iso")
    if previous and previous != str(path):
        tools_iso.remove_iso(Path(previous))
    _record(task, "ngt.certificate.issue", vm, serial=issued.serial, revoked=revoked)
    return f"Guest Tools ISO mounted in CD-ROM {slot} of {vm.name} (certificate {issued.serial})"


def request_unmount(actor: Actor, vm: VM, parent: Task | None = None) -> Task:
    state = state_of(vm)
    if not state.iso_mounted and _tools_cdrom(vm) is None:
        raise Conflict({"vm": [f"no Guest Tools ISO is mounted on VM {vm.name}"]})
    _check_vm(vm)
    with transaction.atomic():
        _locked_state(vm)
        return _start(actor, "ngt.unmount", vm, {}, parent=parent)


def _eject_tools(vm: VM) -> None:
    """Eject every tools ISO of the VM and delete its file. Safe to repeat."""
    driver = driver_for(vm)
    for cdrom in vm.cdroms.filter(purpose=GUEST_TOOLS).exclude(iso_path=""):
        driver.eject_cdrom(vm, cdrom.slot)
        tools_iso.remove_iso(Path(cdrom.iso_path))
        CdRom.objects.filter(pk=cdrom.pk).update(iso_path="", purpose="", image=None)
    GuestTools.objects.filter(vm=vm).update(iso_mounted=False, updated_at=timezone.now())


@task_kind("ngt.unmount", label="Unmount Guest Tools")
def run_unmount(task: Task, progress: Progress) -> str:
    vm = vm_of_task(task)
    progress(30, "Ejecting the tools ISO")
    _eject_tools(vm)
    return f"Guest Tools ISO unmounted from {vm.name} and deleted"


def request_disable(actor: Actor, vm: VM) -> Task:
    if not state_of(vm).enabled:
        raise Conflict({"vm": [f"Guest Tools are not enabled on VM {vm.name}"]})
    _check_vm(vm)
    with transaction.atomic():
        state = _locked_state(vm)
        state.enabled = False
        state.save(update_fields=["enabled", "updated_at"])
        return _start(actor, "ngt.disable", vm, {"was_enabled": True})


@task_kind("ngt.disable", undo=undo_enable, label="Disable Guest Tools")
def run_disable(task: Task, progress: Progress) -> str:
    vm = vm_of_task(task)
    progress(30, "Ejecting the tools ISO")
    _eject_tools(vm)
    with transaction.atomic():
        revoked = revoke_current(vm)
        GuestTools.objects.filter(vm=vm).update(enabled=False, certificate=None, link_active=False)
    if revoked:
        _record(task, "ngt.certificate.revoke", vm, serials=revoked)
    return f"Guest Tools disabled on {vm.name}" + (f", certificate {revoked[0]} revoked" if revoked else "")


def leave_identity(vm: VM) -> str | None:
    """The VM hook once a VM is made a template: its certificate is revoked and its tools ISO ejected and
    deleted, so that no clone inherits its identity; the agent installed in its disk stays, and Guest Tools
    stay enabled, so that each clone gets a configuration-only ISO with an identity of its own."""
    if not GuestTools.objects.filter(vm=vm).exists():
        return None
    _eject_tools(vm)
    with transaction.atomic():
        revoked = revoke_current(vm)
        GuestTools.objects.filter(vm=vm).update(certificate=None, link_active=False, updated_at=timezone.now())
    if revoked:
        audit.record(Actor.system(), "ngt.certificate.revoke", vm, serials=revoked, reason="made a template")
        return f"Guest Tools certificate {revoked[0]} revoked and tools ISO removed"
    return None


def forget_tools_iso(vm: VM) -> None:
    """The VM hook before a VM goes: its tools ISO, which holds a private key, goes too once that commits."""
    for iso_path in vm.cdroms.filter(purpose=GUEST_TOOLS).exclude(iso_path="").values_list("iso_path", flat=True):
        transaction.on_commit(lambda iso_path=iso_path: tools_iso.remove_iso(Path(iso_path)))


def host_state_changed(host, old: str, new: str) -> None:
    """The host hook: the guests of an unreachable host are gone with it, so their links show inactive now
    (a TLS session to the VIP would only time out minutes later). An agent that still answers (its host was
    cut off, not down) links again and shows active."""
    if new == "unreachable":
        GuestTools.objects.filter(vm__host=host, link_active=True).update(link_active=False)


def release_tools_iso(vm: VM, serial: str) -> bool:
    """The agent has linked with `serial`: when that is the mounted ISO's certificate, the agent took its key
    and config, so the ISO is ejected and deleted (no private key stays on the host). Safe to repeat."""
    state = state_of(vm)
    if not (state.iso_mounted and state.certificate and state.certificate.serial == serial):
        return False
    _eject_tools(vm)
    audit.record(Actor.system(), "ngt.iso.release", vm, serial=serial)
    return True


# guest-shutdown and guest-reboot: through the agent. A shutdown ends once the VM is off (or fails after
# FACET_GUEST_SHUTDOWN_SECONDS); a reboot ends with the agent's yes, and says it was requested.
GUEST_POWER = {"guest-shutdown": "shutdown", "guest-reboot": "reboot"}
GUEST_POWER_LABELS = {  # what pages call them, and what each does
    "guest-shutdown": ("Guest Shut Down", "Through Guest Tools: the guest's own OS shuts down cleanly, then the VM "
                                          "powers off."),
    "guest-reboot": ("Guest Reboot", "Through Guest Tools: the guest's own OS restarts cleanly."),
}


def agent_linked(vm: VM) -> bool:
    """Whether the VM page offers the guest's own shutdown and reboot: it runs and its agent is linked."""
    guest_tools = getattr(vm, "guest_tools", None)  # absent until Guest Tools are enabled
    return vm.power_state == VM.PowerState.ON and bool(guest_tools and guest_tools.link_active)


def link_pending(vm: VM) -> bool:
    """Whether the VM page waits for the agent: the VM runs with the tools ISO mounted and no link yet."""
    guest_tools = getattr(vm, "guest_tools", None)
    return (vm.power_state == VM.PowerState.ON and guest_tools is not None and guest_tools.iso_mounted
            and not guest_tools.link_active)


def request_guest_power(actor: Actor, vm: VM, action: str) -> Task:
    if action not in GUEST_POWER:
        raise InvalidRequest({"action": [f"choose one of {', '.join(GUEST_POWER)}"]})
    _check_vm(vm)
    if not state_of(vm).link_active:
        raise Conflict({"vm": [f"the Guest Tools agent of VM {vm.name} has no link: use shutdown or reboot (ACPI)"]})
    task = create_task(actor, f"vm.{action}", vm, queue=vm.host.queue, params={"action": action})
    audit.record(actor, f"vm.{action}", vm, task=str(task.uuid))
    return task


def run_guest_power(task: Task, progress: Progress) -> str:
    vm = vm_of_task(task)
    command = GUEST_POWER[task.params["action"]]
    progress(20, f"Asking the Guest Tools agent of {vm.name} to {command}")
    reply = commands.send_command(str(vm.uuid), command)
    if reply is None or not reply.get("ok"):
        why = "no reply within 30 s" if reply is None else reply.get("error", "refused")
        raise Conflict(f"the agent of {vm.name} did not {command}: {why}")
    if command == "reboot":  # a reboot leaves the VM on: nothing the hypervisor shows tells it happened
        return f"Reboot requested: the guest of {vm.name} said it reboots"
    return _follow_to_off(vm, progress)


def _follow_to_off(vm: VM, progress: Progress) -> str:
    """The agent said yes; the task ends when the hypervisor shows the VM off, or fails after the wait."""
    progress(50, f"The guest of {vm.name} is shutting down; waiting for the VM to power off")
    wait = settings.FACET_GUEST_SHUTDOWN_SECONDS
    deadline = time.monotonic() + wait
    driver = driver_for(vm)
    while (state := driver.state(vm)) != VM.PowerState.OFF:
        if time.monotonic() >= deadline:
            raise Conflict(f"the guest of {vm.name} accepted the shutdown but the VM is still {state} after "
                           f"{wait:.0f} s: look at its console, or use Shut Down (ACPI) or Power Off")
        time.sleep(1)
    if VM.objects.filter(pk=vm.pk).exclude(power_state=VM.PowerState.OFF).update(power_state=VM.PowerState.OFF):
        tell_powered([(vm, VM.PowerState.OFF)])
    return f"{vm.name} is off: its guest shut down"


for _action in GUEST_POWER:
    task_kind(f"vm.{_action}", label=GUEST_POWER_LABELS[_action][0])(run_guest_power)

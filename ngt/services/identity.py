"""A new VM's own Guest Tools identity, made by its create or clone task: the `guest_tools` part of those
requests (`{"mount": bool, "capabilities": [...]}`, a VMOption) and the VM hooks that carry it out.

By default a clone of a VM or template whose Guest Tools are enabled gets them too: in the clone task, before
the hypervisor defines it, a new key pair is made, its certificate issued, and both written on a
configuration-only tools ISO (the agent is in the cloned disk already) in a CD-ROM of its own. The private
key exists only in that ISO. `"mount": false` skips it; `"mount": true` on a VM made from nothing (or cloned
from a source without Guest Tools) mounts the full ISO, installer included."""

from dataclasses import dataclass
from pathlib import Path

from django.db import transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from console.core import audit
from console.core.actors import Actor
from console.core.errors import InvalidRequest
from console.core.registry import NewVM
from console.models import VM
from console.services.cdroms import fill_slots
from ngt.services import authority, tools_iso
from ngt.services.guest_tools import (
    GUEST_TOOLS,
    check_authority,
    checked_capabilities,
    new_iso_path,
    new_tools_files,
    state_of,
)

from ..models import GuestTools, VMCertificate

FIELD = "guest_tools"


@dataclass(frozen=True)
class GuestToolsRequest:
    """What a create or clone request says; None for what it leaves to the default."""

    mount: bool | None = None
    capabilities: list[str] | None = None


@dataclass(frozen=True)
class Plan:
    """What `record` writes for the new VM, and the create or clone task then mounts."""

    capabilities: list[str]


def from_api(value: dict | GuestToolsRequest | None) -> GuestToolsRequest | None:
    """The option as the hooks read it, from the API's (or a caller's) `{"mount": bool, "capabilities": [...]}`."""
    if value is None or isinstance(value, GuestToolsRequest):
        return value
    if not isinstance(value, dict):
        raise InvalidRequest({FIELD: ['give an object such as {"mount": true, "capabilities": []}']})
    unknown = sorted(set(value) - {"mount", "capabilities"})
    if unknown:
        raise InvalidRequest({f"{FIELD}.{name}": ["unknown field; give mount and capabilities"] for name in unknown})
    mount, capabilities = value.get("mount"), value.get("capabilities")
    if mount is not None and not isinstance(mount, bool):
        raise InvalidRequest({f"{FIELD}.mount": ["give true or false"]})
    if capabilities is not None and not (isinstance(capabilities, list) and all(
            isinstance(name, str) for name in capabilities)):
        raise InvalidRequest({f"{FIELD}.capabilities": ["give a list of capability names"]})
    return GuestToolsRequest(mount=mount, capabilities=capabilities)


def check_new_vms(new_vms: list[NewVM], requests: list[GuestToolsRequest | None]) -> list[Plan | None]:
    """The VM hook before a create or clone writes anything: whether each new VM gets its own identity. The
    sources' Guest Tools are read, and each cluster's CA checked, once for all (a bulk clone's thousand)."""
    sources: dict[int, GuestTools] = {}
    for source in {new_vm.source.pk: new_vm.source for new_vm in new_vms if new_vm.source is not None}.values():
        sources[source.pk] = state_of(source)
    plans = [_plan(new_vm, from_api(request) or GuestToolsRequest(),  # callers in code may give the API's object
                   sources[new_vm.source.pk] if new_vm.source is not None else None)
             for new_vm, request in zip(new_vms, requests, strict=True)]
    mounting = {new_vm.cluster.pk: new_vm.cluster for new_vm, plan in zip(new_vms, plans, strict=True) if plan}
    for cluster in mounting.values():
        check_authority(cluster)  # a CA that cannot sign fails the request, not the task
    return plans


def _plan(new_vm: NewVM, request: GuestToolsRequest, source: GuestTools | None) -> Plan | None:
    mount = request.mount if request.mount is not None else bool(source and source.enabled)
    try:
        capabilities = checked_capabilities(
            request.capabilities if request.capabilities is not None else (source.capabilities if source else []))
    except InvalidRequest as error:
        raise InvalidRequest({f"{FIELD}.capabilities": error.errors["capabilities"]}) from None
    if not mount:
        return None
    if new_vm.is_template:
        if request.mount:
            raise InvalidRequest({f"{FIELD}.mount": [
                "a template never runs: its clones get Guest Tools, each with an identity of its own"]})
        return None
    return Plan(capabilities=capabilities)


def record(made: list[tuple[VM, Plan | None]]) -> None:
    """The VM hook inside the create or clone transaction: Guest Tools enabled, no certificate yet; the task
    mounts (`mount_new_identity`). One statement for all the VMs."""
    GuestTools.objects.bulk_create([GuestTools(vm=vm, enabled=True, capabilities=plan.capabilities)
                                    for vm, plan in made if plan is not None], batch_size=500)


def mount_new_identity(vms: list[VM]) -> None:
    """The VM hook in the create or clone task, before the hypervisor defines the VMs: issue each VM's first
    certificate and put it, with its new private key, on a tools ISO in a CD-ROM; for a batch of clones, with
    the CA opened once and a query per table. A rerun after it committed does nothing; one after a failure
    before, starts again (an ISO written then is swept, see sweep.py)."""
    states = {state.vm_id: state for state in GuestTools.objects.filter(
        vm__in=vms, enabled=True, certificate__isnull=True)}
    todo = [vm for vm in vms if vm.pk in states]
    if not todo:
        return
    with_agent = _agent_in_disk(todo)
    signers: dict[int, authority.Signer] = {}
    made: list[tuple[VM, authority.IssuedCertificate, Path]] = []
    try:
        for vm in todo:
            if vm.cluster_id not in signers:
                signers[vm.cluster_id] = authority.open_authority(authority.authority_for(vm.cluster))
            issued, files = new_tools_files(vm, signers[vm.cluster_id], states[vm.pk].capabilities,
                                            config_only=vm.pk in with_agent)
            path = new_iso_path(vm)
            tools_iso.write_iso(path, tools_iso.build_iso(files))
            made.append((vm, issued, path))
        _record_identities(made, states)
    except BaseException:
        for _, _, path in made:
            tools_iso.remove_iso(path)  # the database rolled back: no ISO may outlive it
        raise
    audit.record_each(Actor.system(), "ngt.certificate.issue",
                      [(vm, {"serial": issued.serial, "on": "create"}) for vm, issued, _ in made])


def _record_identities(made: list[tuple[VM, authority.IssuedCertificate, Path]],
                       states: dict[int, GuestTools]) -> None:
    with transaction.atomic():
        certificates = VMCertificate.objects.bulk_create([
            VMCertificate(vm=vm, serial=issued.serial, certificate_pem=issued.pem, not_before=issued.not_before,
                          not_after=issued.not_after) for vm, issued, _ in made])
        # Each VM's state points at its new certificate: one statement for the batch.
        GuestTools.objects.filter(pk__in=[states[vm.pk].pk for vm, _, _ in made]).update(
            iso_mounted=True, updated_at=timezone.now(), certificate=Subquery(VMCertificate.objects.filter(
                pk__in=[certificate.pk for certificate in certificates], vm_id=OuterRef("vm_id")).values("pk")))
        fill_slots({vm: str(path) for vm, _, path in made}, GUEST_TOOLS)  # being created: drives may be added


def _agent_in_disk(vms: list[VM]) -> set[int]:
    """Which VMs have the agent installed (clones of a VM or template with Guest Tools): their ISO carries
    configuration only."""
    parents = set(GuestTools.objects.filter(vm_id__in={vm.parent_id for vm in vms if vm.parent_id}, enabled=True)
                  .values_list("vm_id", flat=True))
    return {vm.pk for vm in vms if vm.parent_id in parents}


def form_request(form) -> GuestToolsRequest:
    choice = form.cleaned_data.get("guest_tools_mount") or ""
    return GuestToolsRequest(mount={"": None, "yes": True, "no": False}[choice],
                             capabilities=form.cleaned_data.get("guest_tools_capabilities") or None)


"""A VM's customization from request to removal of its media.

At request time the script is read, validated and copied (`prepare`, then `record` with the VM's rows);
the create or clone task builds and attaches the media (`attach_media`); the guest's report ends it, and
the media are ejected and deleted: cloud-init's result as the Guest Tools agent relays it (`guest_reported`,
whatever FACET_PUBLIC_URL is), or cloud-init's phone_home for guests without the agent (`phone_home`); the
VM's next power-off without either ends it as `unknown` (`power_changed`)."""

import dataclasses
import functools
import ipaddress
import os
import re
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from console.core import audit
from console.core.actors import Actor
from console.core.drivers import get_driver
from console.core.errors import Conflict, InvalidRequest
from console.core.models import Task
from console.core.registry import GuestReport, NewVM
from console.core.tasks import Progress, create_task, task_kind
from console.models import VM, CdRom, Cluster
from console.models.inventory import hostname_validator
from console.services.cdroms import fill_slots

from ..models import CustomizationScript, Datasource, Kind, VMCustomization
from . import sealed, sources, sysprep
from .content import Validation, as_bytes, size_limit
from .media import Instance, build_iso, media_files
from .validation import decoded, validate

Status = VMCustomization.Status
FIELD = "customization"
KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
MAX_KEYS, MAX_VALUE = 64, 1024
HOSTNAME = re.compile(hostname_validator.regex.pattern)


@dataclass
class CustomizationRequest:
    """What a create or clone asks for; exactly one of content, script and storage_path."""

    kind: str = ""  # "": Sysprep for a Windows guest, else cloud-init
    content: str | bytes | None = None
    script: CustomizationScript | str | None = None  # the script, or its uuid or name
    storage_path: str = ""  # facet://CONTAINER/path
    key_values: dict[str, str] = field(default_factory=dict)
    datasource: str = ""  # "": config-drive for cloud-init
    # Secrets for the media only: the content names each by `sealed.placeholder(name)` (see sealed.py).
    sealed_values: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Prepared:
    """A request checked and read: what `record` stores."""

    kind: str
    datasource: str
    content: str
    format: str
    source: str
    script: CustomizationScript | None
    key_values: dict[str, str]
    sealed_values: dict[str, str] = field(default_factory=dict)


def check_new_vms(new_vms: list[NewVM], requests: list[CustomizationRequest | None]) -> list[Prepared | None]:
    """The VM hook before a create or clone writes anything: `prepare` for each VM about to be made."""
    return [prepare(request, cluster=new_vm.cluster, guest_os=new_vm.guest_os, hostname=new_vm.hostname,
                    name=new_vm.name, is_template=new_vm.is_template)
            for new_vm, request in zip(new_vms, requests, strict=True)]


def prepare(request: CustomizationRequest | None, *, cluster: Cluster, guest_os: str, hostname: str,
            name: str, is_template: bool = False) -> Prepared | None:
    """Read and validate everything now, so that a bad script fails the request, not the task. The
    hostname is the one given, else the VM's name when that is a valid hostname."""
    if request is None:
        return None
    if is_template:
        raise InvalidRequest({FIELD: ["a template never boots: give the customization to its clones"]})
    kind = request.kind or (Kind.SYSPREP if guest_os == VM.GuestOS.WINDOWS else Kind.CLOUD_INIT)
    if kind not in Kind.values:
        raise InvalidRequest({f"{FIELD}.kind": [f"choose one of {', '.join(Kind.values)}"]})
    datasource = _datasource(kind, request.datasource)
    data, source, script, which = _read(request, kind, cluster)
    result, text = _validated(kind, data)
    if not result.valid:
        raise InvalidRequest({f"{FIELD}.{which}": [f"line {p.line}, column {p.column}: {p.message}"
                                                   for p in result.errors]})
    key_values = check_key_values(request.key_values)
    _check_hostname(kind, text, hostname or (name if HOSTNAME.match(name) else ""), name)
    if kind == Kind.SYSPREP:
        missing = sorted(sysprep.placeholders(text) - set(key_values))
        if missing:
            raise InvalidRequest({f"{FIELD}.key_values": [
                f"the answer file uses {{{{ {key} }}}}; give it a value" for key in missing]})
    return Prepared(kind=kind, datasource=datasource, content=text, format=result.format, source=source,
                    script=script, key_values=key_values, sealed_values=dict(request.sealed_values))


def _validated(kind: str, data: bytes) -> tuple[Validation, str]:
    """The verdict on a script and its text; a bulk clone's every clone asks about the same script."""
    return _validated_within(kind, data, size_limit())


@functools.lru_cache(maxsize=8)
def _validated_within(kind: str, data: bytes, limit: int) -> tuple[Validation, str]:
    return validate(kind, data), decoded(data) or ""


def unknown_keys(request: CustomizationRequest | None, keys: list[str], new_vm: NewVM) -> list[str]:
    """The per-clone keys (a bulk clone's table columns) this customization cannot take: any key without a
    customization; a key that is not letters, digits and '_'; and, when the script is a template, a key it
    does not name (a Sysprep answer file's `{{ key }}`, a `## template: jinja` cloud-init script's text).
    Plain cloud-init takes any key: it is in the instance's meta-data (`ds.meta_data.meta.KEY`)."""
    if request is None:
        return list(keys)
    kind = request.kind or (Kind.SYSPREP if new_vm.guest_os == VM.GuestOS.WINDOWS else Kind.CLOUD_INIT)
    malformed = [key for key in keys if not re.match(KEY_PATTERN, key)]
    try:
        data = _read(request, kind, new_vm.cluster)[0]
    except InvalidRequest:
        return malformed  # the script itself is wrong: its check says so, for the whole request
    text = _validated(kind, data)[1]
    if kind == Kind.SYSPREP:
        named = sysprep.placeholders(text)
    elif text.lstrip().lower().startswith("## template: jinja"):
        named = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text))
    else:
        return malformed
    return malformed + [key for key in keys if key not in named and key not in malformed]


def per_clone(request: CustomizationRequest | None, key_values: dict[str, str]) -> CustomizationRequest | None:
    """The customization of one clone of a bulk clone: its own key-values over the shared ones."""
    if request is None:
        return None
    return dataclasses.replace(request, key_values={**request.key_values, **key_values})


def _datasource(kind: str, asked: str) -> str:
    if kind == Kind.SYSPREP:
        if asked not in ("", Datasource.SYSPREP):
            raise InvalidRequest({f"{FIELD}.datasource": ["a Sysprep answer file goes on Sysprep media"]})
        return Datasource.SYSPREP
    if asked in ("", Datasource.CONFIG_DRIVE, Datasource.NOCLOUD):
        return asked or Datasource.CONFIG_DRIVE
    raise InvalidRequest({f"{FIELD}.datasource": ["choose config-drive or nocloud"]})


def _read(request: CustomizationRequest, kind: str, cluster: Cluster
          ) -> tuple[bytes, str, CustomizationScript | None, str]:
    """(bytes, source label, library script, request field) of the one source given."""
    given = [name for name, value in (("content", request.content), ("script", request.script),
                                      ("storage_path", request.storage_path)) if value]
    if len(given) != 1:
        raise InvalidRequest({FIELD: ["give exactly one of content, script or storage_path"]})
    if request.storage_path:
        data = sources.read_storage_path(request.storage_path, cluster)
        return data, request.storage_path, None, "storage_path"
    if request.script:
        script = _script(request.script, kind)
        return script.content.encode(), f"library script {script.name}", script, "script"
    return as_bytes(request.content), "pasted", None, "content"


def _script(reference: CustomizationScript | str, kind: str) -> CustomizationScript:
    if isinstance(reference, CustomizationScript):
        script = reference
    else:
        try:
            script = CustomizationScript.objects.filter(uuid=uuid.UUID(str(reference))).first()
        except ValueError:
            script = CustomizationScript.objects.filter(name=reference).first()
        if script is None:
            raise InvalidRequest({f"{FIELD}.script": [f"no saved script is named or has the uuid {reference!r}"]})
    if script.kind != kind:
        raise InvalidRequest({f"{FIELD}.script": [f"{script.name} is a {script.kind} script, not {kind}"]})
    return script


def check_key_values(values: object) -> dict[str, str]:
    if not isinstance(values, dict):
        raise InvalidRequest({f"{FIELD}.key_values": ["give key-values as an object of strings"]})
    if len(values) > MAX_KEYS:
        raise InvalidRequest({f"{FIELD}.key_values": [f"at most {MAX_KEYS} key-values"]})
    checked = {}
    for key, value in values.items():
        if not isinstance(key, str) or not re.match(KEY_PATTERN, key):
            raise InvalidRequest({f"{FIELD}.key_values": [
                f"{key!r}: a key is letters, digits and '_', not starting with a digit"]})
        if not isinstance(value, str | int | float | bool) or len(str(value)) > MAX_VALUE:
            raise InvalidRequest({f"{FIELD}.key_values": [f"{key}: give a text value of at most {MAX_VALUE} "
                                                          "characters"]})
        if reason := sysprep.unwritable(str(value)):  # an answer file could not hold it (cloud-init's YAML neither)
            raise InvalidRequest({f"{FIELD}.key_values": [f"{key}: {reason}"]})
        checked[key] = str(value)
    return checked


def _check_hostname(kind: str, text: str, hostname: str, name: str) -> None:
    if not hostname:
        raise InvalidRequest({"hostname": [
            f"{name!r} is not a valid hostname: give the VM a hostname for its customization"]})
    if kind == Kind.SYSPREP and sysprep.computer_name_wanted(text) and len(hostname) > sysprep.COMPUTER_NAME_MAX:
        raise InvalidRequest({"hostname": [
            f"ComputerName comes from the hostname, and Windows allows {sysprep.COMPUTER_NAME_MAX} characters; "
            f"{hostname!r} has {len(hostname)}: give a shorter hostname"]})


def record(made: list[tuple[VM, Prepared | None]]) -> None:
    """Store each copy beside its new VM's rows (inside the request's transaction), in one statement for all."""
    made = [(vm, prepared) for vm, prepared in made if prepared is not None]
    uses = Counter(prepared.script.pk for _, prepared in made if prepared.script is not None)
    for script_pk, count in uses.items():
        CustomizationScript.objects.filter(pk=script_pk).update(usage_count=F("usage_count") + count)
    VMCustomization.objects.bulk_create([VMCustomization(
        vm=vm, kind=prepared.kind, datasource=prepared.datasource, format=prepared.format,
        content=prepared.content, source=prepared.source[:300], script=prepared.script,
        key_values=prepared.key_values, sealed_values=sealed.seal(prepared.sealed_values))
        for vm, prepared in made], batch_size=500)


def phone_home_base() -> str:
    """The console's address as guests reach it, or "" when FACET_PUBLIC_URL names this machine only
    (its loopback default): a guest could not call that back."""
    url = settings.PUBLIC_URL
    host = urlsplit(url).hostname or ""
    if host in ("", "localhost"):
        return ""
    try:
        if ipaddress.ip_address(host).is_loopback:
            return ""
    except ValueError:
        pass
    return url


def iso_path(vm: VM) -> Path:
    disk = next(iter(vm.disks.all()), None)  # the first by index (the model's order), prefetched in a batch
    storage_container = disk.storage_container if disk else vm.cluster.storage_containers.first()
    if storage_container is None:
        raise Conflict({FIELD: ["the cluster has no storage container for the customization media"]})
    return storage_container.resolve(f"vms/{vm.uuid}/customization.iso")


def attach_media(vms: list[VM]) -> None:
    """Build each VM's media and put them in a CD-ROM row (the create task inserts its CD-ROMs next), with a
    query per table for a batch of clones. A rerun after the media were built keeps them."""
    customizations = {c.vm_id: c for c in VMCustomization.objects.filter(vm__in=vms)}
    todo = [(vm, customizations[vm.pk]) for vm in vms if _needs_media(customizations.get(vm.pk))]
    if not todo:
        return
    written: list[Path] = []
    try:
        for vm, customization in todo:
            customization.iso_path = str(_build_media(vm, customization))
            written.append(Path(customization.iso_path))
        _record_media(todo)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)  # the database rolled back: a rerun builds them again
        raise


def _needs_media(customization: VMCustomization | None) -> bool:
    return customization is not None and not customization.ended and not (
        customization.iso_path and Path(customization.iso_path).is_file())


def _build_media(vm: VM, customization: VMCustomization) -> Path:
    base = phone_home_base() if customization.kind == Kind.CLOUD_INIT else ""
    url = base + reverse("customization-phone-home", args=[customization.new_report_token()]) if base else ""
    instance = Instance(uuid=str(vm.uuid), name=vm.name, hostname=vm.hostname, key_values=customization.key_values,
                        nics=list(vm.nics.all()), phone_home_url=url)
    content = sealed.fill(customization.content, sealed.unseal(customization.sealed_values))
    files = media_files(customization.datasource, content, instance)
    path = iso_path(vm)
    _write_private(path, build_iso(customization.datasource, files))
    customization.media_files = [{"path": name, "size": len(data)} for name, data in sorted(files.items())]
    return path


def _record_media(todo: list[tuple[VM, VMCustomization]]) -> None:
    with transaction.atomic():  # fill_slots locks the VMs' rows until the slots are filled
        slots = fill_slots({vm: customization.iso_path for vm, customization in todo},
                           CdRom.Purpose.CUSTOMIZATION)  # being created: drives may be added
        for vm, customization in todo:
            customization.cdrom_slot, customization.status = slots[vm.pk], Status.MEDIA_ATTACHED
            customization.sealed_values = ""  # in the media now, and nowhere else
            VMCustomization.objects.filter(pk=customization.pk).update(
                iso_path=customization.iso_path, cdrom_slot=customization.cdrom_slot,
                media_files=customization.media_files, status=customization.status, sealed_values="",
                report_token_hash=customization.report_token_hash, updated_at=timezone.now())


def _write_private(path: Path, data: bytes) -> None:
    """Mode 0600 (the media may hold passwords), under a temporary name until complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(partial, path)


def discard(vm: VM) -> None:
    """The VM goes (failed create, or delete): its media file goes with it."""
    path = VMCustomization.objects.filter(vm=vm).values_list("iso_path", flat=True).first()
    if path:
        Path(path).unlink(missing_ok=True)


def remove_media(customization: VMCustomization) -> None:
    """Eject the media and delete the ISO. Safe to repeat."""
    vm = customization.vm
    if customization.cdrom_slot is not None and vm.host is not None:
        get_driver(vm.host.driver_uri).eject_cdrom(vm, customization.cdrom_slot)
        CdRom.objects.filter(vm=vm, slot=customization.cdrom_slot, purpose=CdRom.Purpose.CUSTOMIZATION).update(
            iso_path="", image=None, purpose="")
    if customization.iso_path:
        Path(customization.iso_path).unlink(missing_ok=True)
    customization.iso_path, customization.cdrom_slot = "", None
    VMCustomization.objects.filter(pk=customization.pk).update(iso_path="", cdrom_slot=None)


def waiting_for_guest(vm: VM) -> bool:
    """Whether the VM page waits for the guest to report its customization: it runs and has not yet."""
    customization = getattr(vm, "customization", None)  # a VM created without customization has none
    return (vm.power_state == VM.PowerState.ON and customization is not None
            and customization.status in VMCustomization.ACTIVE)


def power_changed(changes: list[tuple[VM, str]]) -> None:
    """Power-on with the media in starts the customization; a power-off before any report ends it as
    `unknown` (never a made-up success) and removes the media."""
    states = {vm.pk: state for vm, state in changes}
    # Powered on with the media in: one statement for a batch of clones.
    VMCustomization.objects.filter(
        vm_id__in=[pk for pk, state in states.items() if state == VM.PowerState.ON],
        status=Status.MEDIA_ATTACHED).update(status=Status.RUNNING)
    off = [pk for pk, state in states.items() if state == VM.PowerState.OFF]
    if off:
        active = VMCustomization.objects.filter(vm_id__in=off, status__in=VMCustomization.ACTIVE)
        for customization in active.select_related("vm__host"):
            if _end(customization, Status.UNKNOWN, "the VM powered off before its guest reported"):
                _queue_removal(customization, Actor.system())


def _queue_removal(customization: VMCustomization, actor: Actor) -> None:
    """Eject and delete in a task of the VM's host: a hypervisor call that fails there can be rerun, and
    does not fail the power action or the report that ended the customization."""
    if customization.iso_path or customization.cdrom_slot is not None:
        vm = customization.vm
        create_task(actor, "vm.customization.remove", vm, queue=vm.host.queue if vm.host else "default")


def _end(customization: VMCustomization, status: str, message: str) -> bool:
    """Move to an end state unless someone else did first; True when this call did."""
    return bool(VMCustomization.objects.filter(pk=customization.pk, status=customization.status).update(
        status=status, message=message[:4000], reported_at=timezone.now(), report_token_hash=""))


def report(vm: VM, status: str, message: str = "", actor: Actor | None = None) -> VMCustomization:
    """What the guest says of its customization (the agent's customization_status, or phone_home):
    running, succeeded or failed. An end removes the media, in a task on the VM's host."""
    if status not in (Status.RUNNING, Status.SUCCEEDED, Status.FAILED):
        raise InvalidRequest({"status": ["report running, succeeded or failed"]})
    customization = VMCustomization.objects.select_related("vm__host").filter(vm=vm).first()
    if customization is None:
        raise Conflict({FIELD: [f"VM {vm.name} has no customization"]})
    if customization.status in (Status.SUCCEEDED, Status.FAILED) or (
            status == Status.RUNNING and customization.ended):
        return customization  # the first end stands; a repeated report changes nothing
    actor = actor or Actor.system()
    with transaction.atomic():
        if status == Status.RUNNING:
            VMCustomization.objects.filter(pk=customization.pk).update(status=status, message=message[:4000])
        elif _end(customization, status, message):
            _queue_removal(customization, actor)
        audit.record(actor, "vm.customization.report", vm, status=status)
    customization.refresh_from_db()
    return customization


def guest_reported(reports: list[GuestReport]) -> None:
    """The VM hook for what guests say of their customization through an agent (Guest Tools relays
    cloud-init's result): each VM whose customization is under way takes its report; the rest (a VM without
    customization, or whose customization ended) is left alone, in one query for the whole batch."""
    by_vm = {each.vm_id: each for each in reports}
    active = VMCustomization.objects.filter(vm_id__in=by_vm, status__in=VMCustomization.ACTIVE)
    for vm in VM.objects.filter(pk__in=active.values("vm_id")).select_related("host"):
        guest = by_vm[vm.pk]
        report(vm, guest.status, guest.message or _said(guest.status))


def _said(status: str) -> str:
    return {Status.SUCCEEDED: "cloud-init finished without errors, as the guest's agent reported",
            Status.FAILED: "cloud-init reported errors"}.get(status, "")


def phone_home(token: str, posted: dict, source_address: str | None) -> VMCustomization:
    """cloud-init's phone_home reached the VM's one-time URL: its final stage ran."""
    customization = None
    if token:
        customization = VMCustomization.objects.select_related("vm").filter(
            report_token_hash=VMCustomization.hash_token(token)).first()
    if customization is None:
        raise Conflict({"token": ["this phone_home URL is unknown or was used already"]})
    instance_id = posted.get("instance_id", "")
    if instance_id and instance_id != str(customization.vm.uuid):
        raise Conflict({"instance_id": ["the instance id is not this URL's VM"]})
    hostname = posted.get("hostname", "")
    message = "cloud-init phoned home" + (f" from {hostname[:63]}" if hostname else "")
    return report(customization.vm, Status.SUCCEEDED, message, Actor(user=None, source_address=source_address))


@task_kind("vm.customization.remove", label="Remove customization media")
def run_remove(task: Task, progress: Progress) -> str:
    customization = VMCustomization.objects.select_related("vm__host").filter(vm__uuid=task.entity_uuid).first()
    if customization is None or not (customization.iso_path or customization.cdrom_slot is not None):
        return "no customization media left"
    remove_media(customization)
    return "customization media ejected and deleted"


def check_nic_removal(vm: VM, remaining: int) -> None:
    """A VM whose customization has not ended reports its outcome to the console over the network: its last
    NIC stays until then."""
    customization = VMCustomization.objects.filter(vm=vm).first()
    if remaining == 0 and customization is not None and not customization.ended:
        raise Conflict({"nic": [f"this is the last NIC of {vm.name}, whose customization is {customization.status} "
                                "and reports back over the network; wait for it to end"]})

"""Console pages: volume groups (list, detail with disks, attachment and history) and Docker hosts."""

from django.conf import settings
from django.contrib import messages
from django.core.signing import BadSignature
from django.db.models import Q
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.cache import patch_cache_control
from django.views.decorators.http import require_POST

from console.core.access import ADMIN, OPERATOR
from console.core.errors import ServiceError
from console.core.models import AuditEvent, Task
from console.core.views import (
    actor,
    as_uuid,
    confirm_then_start,
    form_refused,
    paginate,
    refuse,
    role_required,
    task_started,
)
from console.models import VM

from . import forms
from .api.plugin import package_response
from .filtersets import DockerHostFilterSet, VolumeGroupFilterSet
from .models import DockerHost, VolumeGroup
from .services import attachments, docker_host_user_data, docker_hosts, shares, volume_groups
from .services.targets import Target

GiB = forms.GiB


def history(entity) -> dict:
    return {"tasks": Task.objects.filter(entity_uuid=entity.uuid).select_related("created_by")[:10],
            "events": AuditEvent.objects.filter(entity_uuid=entity.uuid)[:10]}


@role_required()
def volume_group_list(request, form=None, status=200):
    filterset = VolumeGroupFilterSet(request.GET, queryset=VolumeGroup.objects.with_details())
    groups = filterset.qs if filterset.is_valid() else VolumeGroup.objects.none()
    return render(request, "containers/volume_group_list.html", {
        "page": paginate(request, groups), "filterset": filterset, "form": form or forms.VolumeGroupForm()},
        status=status)


# The service's fields, as the create form names them.
CREATE_FIELDS = {"name": "name", "size_bytes": "size_gib", "disk_count": "disk_count", "container": "container",
                 "description": "description"}


@require_POST
@role_required(OPERATOR)
def volume_group_create(request):
    """Create from the list page's form; a refusal draws the page again with the values given and each
    reason beside its field."""
    form = forms.VolumeGroupForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            task = volume_groups.request_create(actor(request), data["name"], data["size_gib"] * GiB,
                                                disk_count=data["disk_count"], storage_container=data["container"],
                                                description=data["description"])
        except ServiceError as error:
            for field, problems in error.errors.items():
                for problem in problems:
                    form.add_error(CREATE_FIELDS.get(field), problem)
        else:
            return task_started(request, task, reverse("volume-group-detail", args=[task.entity_uuid]))
    return volume_group_list(request, form=form, status=400)


@role_required()
def volume_group_detail(request, uuid):
    group = get_object_or_404(VolumeGroup.objects.with_details(), uuid=uuid)
    shared = group.shared_with.all()
    return render(request, "containers/volume_group_detail.html", {
        "group": group, "attachment": getattr(group, "attachment", None),
        "grow_form": forms.GrowForm(), "shared_with": shared,
        "shareable": DockerHost.objects.filter(cluster=group.cluster_id).exclude(
            pk__in=[host.pk for host in shared]).exclude(pk=group.created_by_host_id), **history(group)})


@role_required()
def vm_panel(request, uuid):
    """The VM page's panel (registry.vm_panels): the volume groups attached to the VM, or, for a Docker host
    VM, to its Docker host."""
    vm = get_object_or_404(VM.objects.select_related("docker_host"), uuid=uuid)
    docker_host = getattr(vm, "docker_host", None)
    attached_here = Q(attachment__vm=vm) | (Q(attachment__docker_host=docker_host) if docker_host else Q(pk=None))
    groups = VolumeGroup.objects.with_details().filter(attached_here)
    return render(request, "containers/vm_panel.html", {"vm": vm, "groups": groups, "docker_host": docker_host})


PICKER_SIZE = 20


@role_required(OPERATOR)
def attach_targets(request):
    """The "Attach to" picker's choices: VMs and ready Docker hosts whose name holds the search, a few at a time."""
    search = request.GET.get("q", "").strip()
    vms = VM.objects.filter(is_template=False, docker_host__isnull=True, name__icontains=search).only("uuid", "name")
    hosts = DockerHost.objects.filter(state=DockerHost.State.READY, name__icontains=search).only("uuid", "name")
    choices = [(f"vm:{vm.uuid}", vm.name, "VM") for vm in vms.order_by("name")[:PICKER_SIZE]]
    choices += [(f"docker-host:{host.uuid}", host.name, "Docker host") for host in hosts.order_by("name")[:PICKER_SIZE]]
    more = vms.count() + hosts.count() - len(choices)
    return render(request, "containers/attach_targets.html", {"choices": choices, "more": more, "search": search})


def _group_action(request, uuid, act, labels: dict[str, str] | None = None):
    """Run one change of a group from a POSTed form; back to its page with the task or the refusal."""
    group = get_object_or_404(VolumeGroup, uuid=uuid)
    back = reverse("volume-group-detail", args=[uuid])
    try:
        task = act(group)
    except ServiceError as error:
        return refuse(request, error, back, labels)
    return task_started(request, task, back)


def _target(value: str) -> Target | None:
    kind, _, key = value.partition(":")
    if kind == "vm":
        vm = VM.objects.select_related("host").filter(uuid=as_uuid(key)).first()
        return Target(vm=vm) if vm else None
    host = DockerHost.objects.select_related("vm__host").filter(uuid=as_uuid(key)).first()
    return Target(docker_host=host) if host and kind == "docker-host" else None


@require_POST
@role_required(OPERATOR)
def volume_group_attach(request, uuid):
    target = _target(request.POST.get("target", ""))
    if target is None:
        messages.error(request, "Choose a VM or a Docker host to attach to.")
        return redirect("volume-group-detail", uuid)
    force = request.POST.get("force") == "on"
    return _group_action(request, uuid, lambda g: attachments.request_attach(actor(request), g, target, force=force))


@require_POST
@role_required(OPERATOR)
def volume_group_detach(request, uuid):
    force = request.POST.get("force") == "on"
    return _group_action(request, uuid, lambda g: attachments.request_detach(actor(request), g, force=force))


@require_POST
@role_required(OPERATOR)
def volume_group_grow(request, uuid):
    form = forms.GrowForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give a disk number and its new size in GiB.")
        return redirect("volume-group-detail", uuid)
    data = form.cleaned_data
    return _group_action(request, uuid, lambda g: volume_groups.request_grow(
        actor(request), g, data["size_gib"] * GiB, data["index"]), {"size_bytes": "New size", "index": "Disk"})


@role_required(OPERATOR)
def volume_group_delete(request, uuid):
    group = get_object_or_404(VolumeGroup, uuid=uuid)
    return confirm_then_start(request, {
        "title": f"Delete {group.name}?", "action": reverse("volume-group-delete", args=[uuid]),
        "button": "Delete volume group", "text": "Its disk files are deleted. This cannot be undone.",
    }, lambda: volume_groups.request_delete(actor(request), group), back=reverse("volume-group-detail", args=[uuid]),
        done=reverse("volume-groups"))


@require_POST
@role_required(ADMIN)
def volume_group_share(request, uuid):
    """Share the group with a Docker host (`docker_host`), or with `unshare` take a share back."""
    group = get_object_or_404(VolumeGroup, uuid=uuid)
    host = DockerHost.objects.filter(uuid=as_uuid(request.POST.get("docker_host", ""))).first()
    back = reverse("volume-group-detail", args=[uuid])
    if host is None:
        messages.error(request, "Choose a Docker host.")
        return redirect(back)
    unshare = request.POST.get("unshare") == "1"
    try:
        (shares.unshare if unshare else shares.share)(actor(request), group, host)
    except ServiceError as error:
        return refuse(request, error, back)
    messages.success(request, f"{group.name} is {'no longer' if unshare else 'now'} shared with {host.name}")
    return redirect(back)


@role_required()
def docker_host_list(request):
    filterset = DockerHostFilterSet(request.GET, queryset=DockerHost.objects.select_related("vm"))
    return render(request, "containers/docker_host_list.html", {
        "hosts": filterset.qs if filterset.is_valid() else DockerHost.objects.none(), "filterset": filterset,
        # Two forms on one page: ids of their own, so that each label names its own field.
        "register_form": forms.RegisterForm(auto_id="register-%s"),
        "create_form": forms.DockerHostCreateForm(auto_id="create-%s")})


@require_POST
@role_required(ADMIN)
def docker_host_register(request):
    form = forms.RegisterForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give the host a name.")
        return redirect("docker-hosts")
    try:
        host, key = docker_hosts.register(actor(request), form.cleaned_data["name"], form.cleaned_data["address"])
    except ServiceError as error:
        return refuse(request, error, reverse("docker-hosts"))
    return _show_key(host, key)


@require_POST
@role_required(ADMIN)
def docker_host_regenerate_key(request, uuid):
    host = get_object_or_404(DockerHost, uuid=uuid)
    return _show_key(host, docker_hosts.regenerate_key(actor(request), host))


# A new key goes to the browser alone, in a short-lived signed cookie that only the host's key page reads
# (as a new API token does): the page it redirects to shows it, a reload shows it again for those minutes,
# and no server-side store (session, database) ever holds it.
NEW_KEY_COOKIE = "facet_new_docker_host_key"
NEW_KEY_SECONDS = 600


def _show_key(host: DockerHost, key: str):
    url = reverse("docker-host-key", args=[host.uuid])
    response = redirect(url)
    response.set_signed_cookie(NEW_KEY_COOKIE, key, salt=f"facet.docker-host-key.{host.uuid}",
                               max_age=NEW_KEY_SECONDS, path=url, httponly=True,
                               secure=settings.SESSION_COOKIE_SECURE, samesite="Strict")
    return response


@role_required(ADMIN)
def docker_host_key(request, uuid):
    host = get_object_or_404(DockerHost.objects.select_related("vm"), uuid=uuid)
    try:
        key = request.get_signed_cookie(NEW_KEY_COOKIE, salt=f"facet.docker-host-key.{host.uuid}",
                                        max_age=NEW_KEY_SECONDS)
    except (KeyError, BadSignature):
        key = None
    if key is not None and not DockerHost.objects.filter(pk=host.pk, key_hash=DockerHost.hash(key)).exists():
        key = None  # regenerated since, in another tab: that key works no more
    # The console's configured address, never the request's Host header (whoever sent the request chose it).
    response = render(request, "containers/docker_host_key.html", {
        "host": host, "key": key, "console_url": settings.PUBLIC_URL,
        "package_path": docker_host_user_data.PLUGIN_DEB_PATH, "env_file": docker_host_user_data.PLUGIN_ENV_FILE,
        "minutes": NEW_KEY_SECONDS // 60})
    patch_cache_control(response, no_store=True)
    return response


@role_required(ADMIN)
def docker_host_plugin_package(request):
    """The volume plugin's .deb, for an Admin setting up a registered machine."""
    return package_response()


@require_POST
@role_required(ADMIN)
def docker_host_create(request):
    form = forms.DockerHostCreateForm(request.POST)
    if not form.is_valid():
        form_refused(request, form)
        return redirect("docker-hosts")
    data = form.cleaned_data
    try:
        task, host = docker_hosts.request_create(actor(request), name=data["name"], image=data["image"],
                                                 vcpus=data["vcpus"], memory_bytes=data["memory_gib"] * GiB,
                                                 network=data["network"])
    except ServiceError as error:
        return refuse(request, error, reverse("docker-hosts"))
    return task_started(request, task, reverse("docker-host-detail", args=[host.uuid]))


@role_required()
def docker_host_detail(request, uuid):
    host = get_object_or_404(DockerHost.objects.select_related("vm", "created_by"), uuid=uuid)
    return render(request, "containers/docker_host_detail.html", {
        "host": host, "groups": VolumeGroup.objects.filter(attachment__docker_host=host).select_related(
            "storage_container", "attachment"),
        "storage_containers_seen": host.storage_containers_seen.all(), **history(host)})


@role_required(ADMIN)
def docker_host_remove(request, uuid):
    host = get_object_or_404(DockerHost.objects.select_related("vm__host", "cluster"), uuid=uuid)
    if request.method != "POST":
        return render(request, "console/confirm.html", {
            "title": f"Remove Docker host {host.name}?", "action": reverse("docker-host-remove", args=[uuid]),
            "button": "Remove", "back": reverse("docker-host-detail", args=[uuid]),
            "text": "Its key stops working at once." + (" Its VM is deleted." if host.vm else "")})
    try:
        task = docker_hosts.remove(actor(request), host)
    except ServiceError as error:
        return refuse(request, error, reverse("docker-host-detail", args=[uuid]))
    if task is not None:
        return task_started(request, task, reverse("docker-hosts"))
    messages.success(request, f"Docker host {host.name} removed")
    return redirect("docker-hosts")

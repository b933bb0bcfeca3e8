"""REST API viewsets: they check the shape of a request, call a service and serialize the answer."""

from django.contrib.auth import authenticate
from django.db import transaction
from django.db.models import Prefetch
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import AuthenticationFailed, NotFound, ValidationError
from rest_framework.parsers import BaseParser
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from console.core import access, audit
from console.core.actors import Actor, client_address
from console.core.api.authentication import ApiTokenAuthentication
from console.core.api.lookups import UUID_PATTERN
from console.core.api.permissions import AdminOnly
from console.core.api.schema import ERROR_BODY
from console.core.models import ApiToken, AuditEvent, Task
from console.core.tasks.control import request_cancel, rerun

from ..filtersets import AuditEventFilterSet, TaskFilterSet, vm_filterset
from ..models import VM, CdRom, Cluster, Host, Image, Network, Nic, StorageContainer, VirtualDisk
from ..services import (
    adopt,
    bulk,
    bulk_clone,
    cdroms,
    hosts,
    image_import,
    images,
    metrics,
    power,
    templates,
    vm_devices,
    vm_edit,
    vms,
)
from . import serializers as s
from . import vm_list
from .throttling import LoginThrottle

ADMIN = access.ADMIN


def accepted(task: Task) -> Response:
    """What every mutating call answers: 202 with the task doing the work."""
    return Response(s.TaskSerializer(task).data, status=status.HTTP_202_ACCEPTED)


def valid(serializer_class, request) -> dict:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class StreamedBody(BaseParser):
    """Accepts any body and leaves it unread, for the view to stream (CSRF checks on session-authenticated
    requests look at request.POST, which would otherwise make DRF parse, and buffer, the upload)."""

    media_type = "*/*"
    streams_body = True  # exempt from FACET_REQUEST_BODY_LIMIT (console/core/body_limit.py): the view bounds it

    def parse(self, stream, media_type=None, parser_context=None) -> dict:
        return {}


class ByUuid:
    lookup_field = "uuid"
    lookup_value_regex = UUID_PATTERN


class AuditedModelViewSet(ByUuid, viewsets.ModelViewSet):
    """Plain inventory records (clusters, hosts, containers, networks): every write is audited."""

    def _record(self, verb: str, instance) -> None:
        kind = type(instance).__name__.lower()
        audit.record(Actor.from_request(self.request), f"{kind}.{verb}", instance, entity_type=kind)

    def perform_create(self, serializer):
        self._record("create", serializer.save())

    def perform_update(self, serializer):
        self._record("update", serializer.save())

    def perform_destroy(self, instance):
        with transaction.atomic():  # a record still in use (409) leaves no audit event of a delete
            self._record("delete", instance)
            instance.delete()


class ClusterViewSet(AuditedModelViewSet):
    queryset = Cluster.objects.all()
    serializer_class = s.ClusterSerializer
    write_role = ADMIN


class HostViewSet(AuditedModelViewSet):
    queryset = Host.objects.select_related("cluster")
    serializer_class = s.HostSerializer
    write_role = ADMIN
    filterset_fields = ["enabled", "maintenance"]
    ordering_fields = ["name"]

    @extend_schema(request=None, responses={202: s.TaskSerializer})
    @action(detail=True, methods=["post"], url_path="enter-maintenance")
    def enter_maintenance(self, request, uuid=None):
        """No new VMs here from now on; every VM moves to a ready host (a task per VM under the answer's)."""
        return accepted(hosts.request_enter_maintenance(Actor.from_request(request), self.get_object()))

    @extend_schema(request=None, responses={200: s.HostSerializer})
    @action(detail=True, methods=["post"], url_path="leave-maintenance")
    def leave_maintenance(self, request, uuid=None):
        host = hosts.leave_maintenance(Actor.from_request(request), self.get_object())
        return Response(s.HostSerializer(host).data)

    @extend_schema(responses={200: {"type": "array", "items": {"type": "object"}}})
    @action(detail=True, methods=["get"])
    def unmanaged(self, request, uuid=None):
        """The host's domains that Facet did not define, each with why it cannot be adopted (if so)."""
        return Response(adopt.unmanaged(self.get_object()))

    @extend_schema(request=s.AdoptSerializer, responses={202: s.TaskSerializer})
    @action(detail=True, methods=["post"])
    def adopt(self, request, uuid=None):
        """Make an unmanaged domain a Facet VM (Operator and up, as any VM change)."""
        data = valid(s.AdoptSerializer, request)
        return accepted(adopt.request_adopt(Actor.from_request(request), self.get_object(), str(data["uuid"]),
                                            data["name"]))

    def get_permissions(self):
        if self.action == "adopt":
            self.write_role = access.OPERATOR
        return super().get_permissions()


class StorageContainerViewSet(AuditedModelViewSet):
    queryset = StorageContainer.objects.select_related("cluster")
    serializer_class = s.StorageContainerSerializer
    write_role = ADMIN


class NetworkViewSet(AuditedModelViewSet):
    queryset = Network.objects.select_related("cluster")
    serializer_class = s.NetworkSerializer
    write_role = ADMIN


class ImageViewSet(ByUuid, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin,
                   viewsets.GenericViewSet):
    queryset = Image.objects.select_related("storage_container")
    serializer_class = s.ImageSerializer
    filterset_fields = ["kind"]
    ordering_fields = ["name", "size_bytes", "created_at"]

    @extend_schema(request={"application/octet-stream": {"type": "string", "format": "binary"}},
                   responses={202: s.TaskSerializer})
    @action(detail=False, methods=["post"], parser_classes=[StreamedBody])
    def upload(self, request):
        """Upload an image as the raw request body: `?name=NAME&kind=disk|iso[&container=UUID]`."""
        storage_container = None
        if request.query_params.get("container"):
            storage_container = StorageContainer.objects.filter(uuid=request.query_params["container"]).first()
            if storage_container is None:
                raise ValidationError({"container": ["no storage container has this uuid"]})
        length = request.META.get("CONTENT_LENGTH")
        task = images.receive_upload(
            Actor.from_request(request), request._request, name=request.query_params.get("name", ""),
            kind=request.query_params.get("kind", ""), storage_container=storage_container,
            content_length=int(length) if length and length.isdigit() else None)
        return Response(s.TaskSerializer(task).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        images.delete_image(Actor.from_request(self.request), instance)

    @extend_schema(request=s.ImageImportSerializer, responses={202: s.TaskSerializer})
    @action(detail=False, methods=["post"], url_path="import")
    def import_url(self, request):
        """Import an image from an http(s) URL, with an optional sha256; a task downloads, checks and converts it."""
        data = valid(s.ImageImportSerializer, request)
        return accepted(image_import.request_import(
            Actor.from_request(request), data["url"], name=data["name"], kind=data["kind"], sha256=data["sha256"],
            storage_container=data.get("storage_container")))


class VMViewSet(ByUuid, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = VM.objects.select_related("cluster", "host", "parent").prefetch_related(
        Prefetch("nics", queryset=Nic.objects.select_related("network")),
        Prefetch("disks", queryset=VirtualDisk.objects.select_related("storage_container")),
        Prefetch("cdroms", queryset=CdRom.objects.select_related("image")))
    serializer_class = s.VMSerializer
    ordering_fields = ["name", "power_state", "vcpus", "memory_bytes", "created_at", "host__name", "guest_os"]
    ordering = ["name"]
    pagination_class = vm_list.VMRowPagination

    @property
    def filterset_class(self):  # with the other apps' filters, which exist once they all registered
        return vm_filterset()

    # Lists through plain rows (see vm_list): the same JSON as VMSerializer, at a fraction of the CPU.
    # (A comment, not a docstring: drf-spectacular would publish a docstring in the API's schema.)
    def list(self, request) -> Response:
        rows = self.paginate_queryset(self.filter_queryset(VM.objects.all()))
        return self.get_paginated_response(vm_list.vm_list_items(rows))

    @extend_schema(request=s.VMCreateSerializer, responses={202: s.TaskSerializer})
    def create(self, request):
        data = valid(s.VMCreateSerializer, request)
        spec = vms.VMSpec(
            name=data["name"], vcpus=data["vcpus"], memory_bytes=data["memory_bytes"], cluster=data.get("cluster"),
            host=data.get("host"), image=data.get("image"), storage_container=data.get("container"),
            disk_sizes=[d["size_bytes"] for d in data["disks"]],
            nics=[vms.NicSpec(network=n["network"], ip=n.get("ip") or None, mac=n.get("mac") or None)
                  for n in data["nics"]],
            guest_os=data["guest_os"], hostname=data["hostname"], description=data["description"],
            is_template=data["is_template"], power_on=data["power_on"],
            options=s.vm_options(data))
        return accepted(vms.request_create_vm(Actor.from_request(request), spec))

    @extend_schema(responses={202: s.TaskSerializer})
    def destroy(self, request, uuid=None):
        return accepted(vms.request_delete(Actor.from_request(request), self.get_object()))

    def get_serializer_class(self):
        return s.VMDetailSerializer if self.action == "retrieve" else s.VMSerializer

    def retrieve(self, request, uuid=None):
        vm = self.get_object()
        return Response(s.VMDetailSerializer(vm).data, headers={"ETag": vm_edit.etag(vm)})

    @extend_schema(request=s.VMUpdateSerializer, responses={202: s.TaskSerializer})
    def partial_update(self, request, uuid=None):
        """Edit name, description, vCPUs, memory, boot order, high availability. Send the ETag of your GET as
        If-Match: an edit of a VM changed since is refused with 412."""
        data = valid(s.VMUpdateSerializer, request)
        vm = self.get_object()
        task = vm_edit.request_update(Actor.from_request(request), vm, data,
                                      vm_edit.version_of(request.headers.get("If-Match")))
        vm.refresh_from_db()
        response = accepted(task)
        response["ETag"] = vm_edit.etag(vm)
        return response

    def _disk(self, vm: VM, index: str) -> VirtualDisk:
        disk = vm.disks.select_related("storage_container", "vm").filter(index=int(index)).first()
        if disk is None:
            raise NotFound(f"VM {vm.name} has no disk {index}")
        return disk

    def _nic(self, vm: VM, index: str) -> Nic:
        nic = vm.nics.select_related("network", "vm").filter(index=int(index)).first()
        if nic is None:
            raise NotFound(f"VM {vm.name} has no NIC {index}")
        return nic

    @extend_schema(request=s.DiskAddSerializer, responses={202: s.TaskSerializer})
    @action(detail=True, methods=["post"], url_path="disks")
    def add_disk(self, request, uuid=None):
        """Add an empty disk, or a copy or linked clone of a disk image; hot-plugged into a running VM."""
        data = valid(s.DiskAddSerializer, request)
        return accepted(vm_devices.request_add_disk(
            Actor.from_request(request), self.get_object(), size_bytes=data.get("size_bytes"), image=data.get("image"),
            linked=data["linked"], storage_container=data.get("storage_container")))

    @extend_schema(request=s.DiskGrowSerializer, responses={202: s.TaskSerializer})
    @action(detail=True, methods=["patch", "delete"], url_path=r"disks/(?P<index>\d+)")
    def disk(self, request, uuid=None, index=None):
        """PATCH `size_bytes` grows the disk (online); DELETE deletes it, or with `?keep=1` detaches it and
        keeps its data as a disk image."""
        vm = self.get_object()
        disk = self._disk(vm, index)
        actor = Actor.from_request(request)
        if request.method == "DELETE":
            keep = request.query_params.get("keep", "") in ("1", "true", "yes") or request.data.get("keep") is True
            return accepted(vm_devices.request_remove_disk(actor, vm, disk, keep=keep))
        data = valid(s.DiskGrowSerializer, request)
        return accepted(vm_devices.request_grow_disk(actor, vm, disk, data["size_bytes"]))

    @extend_schema(request=s.NicAddSerializer, responses={202: s.TaskSerializer})
    @action(detail=True, methods=["post"], url_path="nics")
    def add_nic(self, request, uuid=None):
        """Add a NIC; hot-plugged into a running VM."""
        data = valid(s.NicAddSerializer, request)
        return accepted(vm_devices.request_add_nic(Actor.from_request(request), self.get_object(), data["network"],
                                                   ip=data.get("ip") or None, mac=data.get("mac") or None))

    @extend_schema(request=s.NicUpdateSerializer, responses={202: s.TaskSerializer})
    @action(detail=True, methods=["patch", "delete"], url_path=r"nics/(?P<index>\d+)")
    def nic(self, request, uuid=None, index=None):
        """PATCH `network` (and `ip`) moves the NIC to another network; DELETE removes it (its static address
        goes back to the pool)."""
        vm = self.get_object()
        nic = self._nic(vm, index)
        actor = Actor.from_request(request)
        if request.method == "DELETE":
            return accepted(vm_devices.request_remove_nic(actor, vm, nic))
        data = valid(s.NicUpdateSerializer, request)
        return accepted(vm_devices.request_set_nic_network(actor, vm, nic, data["network"], ip=data.get("ip") or None))

    @extend_schema(request=s.PowerSerializer, responses={202: s.TaskSerializer})
    @action(detail=True, methods=["post"])
    def power(self, request, uuid=None):
        data = valid(s.PowerSerializer, request)
        return accepted(power.request_power(Actor.from_request(request), self.get_object(), data["action"]))

    @extend_schema(request=s.CloneSerializer, responses={202: s.TaskSerializer})
    @action(detail=True, methods=["post"])
    def clone(self, request, uuid=None):
        data = valid(s.CloneSerializer, request)
        return accepted(vms.request_clone(Actor.from_request(request), self.get_object(), data["name"],
                                          host=data.get("host"), linked=data["linked"], power_on=data["power_on"],
                                          hostname=data["hostname"], snapshot=data.get("snapshot"),
                                          options=s.vm_options(data)))

    @extend_schema(request=None, responses={202: s.TaskSerializer})
    @action(detail=True, methods=["post"], url_path="make-template")
    def make_template(self, request, uuid=None):
        """Make a powered-off VM a template (clones are made from it; it never runs)."""
        return accepted(templates.request_make_template(Actor.from_request(request), self.get_object()))

    @extend_schema(request=None, responses={202: s.TaskSerializer})
    @action(detail=True, methods=["post"], url_path="make-vm")
    def make_vm(self, request, uuid=None):
        """Make a template a VM again."""
        return accepted(templates.request_make_vm(Actor.from_request(request), self.get_object()))

    @extend_schema(request=s.BulkCloneSerializer, responses={202: s.TaskSerializer, 200: dict},
                   parameters=[OpenApiParameter("dry_run", bool, description="1: answer the plan, create nothing")])
    @action(detail=True, methods=["post"], url_path="bulk-clone")
    def bulk_clone(self, request, uuid=None):
        data = valid(s.BulkCloneSerializer, request)
        asked = bulk_clone.BulkCloneRequest(
            source=self.get_object(), count=data["count"], name_pattern=data["name_pattern"],
            start_index=data["start_index"], placement=data["placement"] or {"policy": "spread"},
            linked=data["linked"], options=s.vm_options(data), per_clone=data.get("per_clone"),
            per_clone_csv=data.get("per_clone_csv"), power_on=data["power_on"])
        if request.query_params.get("dry_run", "").lower() in ("1", "true", "yes"):
            return Response(bulk_clone.plan_bulk_clone(asked).as_dict())
        return accepted(bulk_clone.request_bulk_clone(Actor.from_request(request), asked))

    @extend_schema(request=s.InsertIsoSerializer, responses={202: s.TaskSerializer})
    @action(detail=True, methods=["post"], url_path="insert-iso")
    def insert_iso(self, request, uuid=None):
        data = valid(s.InsertIsoSerializer, request)
        return accepted(cdroms.request_insert(Actor.from_request(request), self.get_object(), data["image"],
                                              data.get("slot")))

    @extend_schema(request=s.EjectIsoSerializer, responses={202: s.TaskSerializer})
    @action(detail=True, methods=["post"], url_path="eject-iso")
    def eject_iso(self, request, uuid=None):
        data = valid(s.EjectIsoSerializer, request)
        return accepted(cdroms.request_eject(Actor.from_request(request), self.get_object(), data["slot"]))

    @extend_schema(request=None, responses={200: OpenApiResponse(description=(
        "{vm, since, step, time: [...], cpu_percent: [...], memory_bytes: [...], ...}: one figure per time, "
        "null where no sample was taken")), 400: OpenApiResponse(description="a bad since or step, named")},
        parameters=[
        OpenApiParameter("since", str, description="an ISO 8601 time, or a span back: 90m, 24h, 30d (default 1h)"),
        OpenApiParameter("step", int, description="seconds per figure (default: from the span)")])
    @action(detail=True, methods=["get"])
    def metrics(self, request, uuid=None):
        """The VM's usage per `step` seconds since `since` (see services/metrics.py); null where no sample
        was taken (the VM off, its host down)."""
        vm = self.get_object()
        since, step, until = metrics.parse_window(request.query_params.get("since"), request.query_params.get("step"))
        series = metrics.series(vm.uuid, since, step, until)
        return Response({"vm": str(vm.uuid), "since": series.since, "step": series.step,
                         "time": series.times, **series.figures})

    @extend_schema(request=s.BulkSerializer, responses={202: s.TaskSerializer})
    @action(detail=False, methods=["post"])
    def bulk(self, request):
        data = valid(s.BulkSerializer, request)
        if "uuids" in data:
            selected = VM.objects.filter(uuid__in=data["uuids"])
        else:
            selected = bulk.vms_matching(data["filter"], everything=data["all"])
        return accepted(bulk.request_bulk(Actor.from_request(request), data["action"], selected, data.get("params"),
                                          confirm_count=data.get("confirm_count")))


class TaskViewSet(ByUuid, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = Task.objects.select_related("parent", "created_by")
    filterset_class = TaskFilterSet
    ordering_fields = ["created_at", "status", "kind"]

    def get_serializer_class(self):
        return s.TaskDetailSerializer if self.action == "retrieve" else s.TaskSerializer

    def get_queryset(self):
        queryset = super().get_queryset()
        return queryset.prefetch_related("children") if self.action == "retrieve" else queryset

    @extend_schema(request=None, responses={202: s.TaskSerializer})
    @action(detail=True, methods=["post"])
    def rerun(self, request, uuid=None):
        """Run a failed task again; a bulk task reruns the children that did not succeed."""
        return accepted(rerun(Actor.from_request(request), self.get_object()))

    @extend_schema(request=None, responses={200: s.TaskSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request, uuid=None):
        """Stop a task cleanly: what waits and never started is cancelled (its intent dropped), what runs
        finishes, what is made is kept; a bulk task then reports the counts."""
        return Response(s.TaskSerializer(request_cancel(Actor.from_request(request), self.get_object())).data)


class AuditEventViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    queryset = AuditEvent.objects.all()
    serializer_class = s.AuditEventSerializer
    filterset_class = AuditEventFilterSet


class TokenViewSet(ByUuid, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Your own API tokens (an Admin sees everyone's with `?all=1`)."""

    serializer_class = s.TokenSerializer
    write_role = access.VIEWER

    def get_queryset(self):
        tokens = ApiToken.objects.select_related("user")
        if self.request.query_params.get("all") == "1" and access.has_role(self.request.user, ADMIN):
            return tokens
        return tokens.filter(user=self.request.user)

    @extend_schema(request=s.TokenSerializer, responses={201: {"type": "object"}})
    def create(self, request):
        data = valid(s.TokenSerializer, request)
        token, key = access.create_token(Actor.from_request(request), request.user, data["name"])
        return Response({**s.TokenSerializer(token).data, "token": key}, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: s.TokenSerializer})
    @action(detail=True, methods=["post"])
    def revoke(self, request, uuid=None):
        token = self.get_object()
        access.revoke_token(Actor.from_request(request), token)
        return Response(s.TokenSerializer(token).data)


class UserViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    queryset = VM.objects.none()
    serializer_class = s.UserSerializer
    permission_classes = [AdminOnly]

    def get_queryset(self):
        from django.contrib.auth.models import User

        return User.objects.prefetch_related("groups").order_by("username")


class ObtainToken(APIView):
    """Trade a username and password for a new named API token, shown once."""

    authentication_classes = [ApiTokenAuthentication]  # none needed; present so failures answer 401
    permission_classes = [AllowAny]
    throttle_classes = [LoginThrottle]

    @extend_schema(request=s.ObtainTokenSerializer, responses={
        201: {"type": "object"}, 429: OpenApiResponse(ERROR_BODY, "Too many login attempts from this address: "
                                                                 "the Retry-After header says when to try again")})
    def post(self, request):
        data = valid(s.ObtainTokenSerializer, request)
        user = authenticate(request, username=data["username"], password=data["password"])
        if user is None or access.role_of(user) is None:
            raise AuthenticationFailed("Wrong username or password, or the user has no role.")
        token, key = access.create_token(Actor(user=user, source_address=client_address(request)),
                                         user, data["name"])
        return Response({"token": key, "name": token.name, "uuid": str(token.uuid)}, status=status.HTTP_201_CREATED)

from django.contrib.auth.models import User
from rest_framework import serializers

from console.core import access
from console.core.access import role_of
from console.core.drivers import shown_uri
from console.core.drivers.base import CDROM_SLOTS, POWER_ACTIONS
from console.core.errors import InvalidRequest
from console.core.models import ApiToken, AuditEvent, Task
from console.core.registry import registry

from ..models import VM, CdRom, Cluster, Host, Image, Network, Nic, Snapshot, StorageContainer, VirtualDisk
from ..services.hosts import check_driver_uri
from ..services.networks import check_addressing


def by_uuid(queryset, **kwargs) -> serializers.SlugRelatedField:
    return serializers.SlugRelatedField(slug_field="uuid", queryset=queryset, **kwargs)


class ClusterSerializer(serializers.ModelSerializer):
    class Meta:
        model = Cluster
        fields = ["uuid", "name", "virtual_ip", "created_at"]


class HostSerializer(serializers.ModelSerializer):
    cluster = by_uuid(Cluster.objects.all(), required=False, help_text="Default: the first cluster")
    state = serializers.CharField(read_only=True, help_text="ready, maintenance or unreachable")

    class Meta:
        model = Host
        fields = ["uuid", "name", "cluster", "address", "driver_uri", "cpus", "memory_bytes", "enabled", "queue",
                  "state", "maintenance", "worker_seen_at", "guest_tools_seen_at", "unreachable_since"]
        read_only_fields = ["maintenance", "worker_seen_at", "guest_tools_seen_at", "unreachable_since"]
        extra_kwargs = {"driver_uri": {"help_text": "in full for Admins; others read scheme, host and path"}}

    def to_representation(self, host):
        data = super().to_representation(host)
        request = self.context.get("request")
        if request is None or not access.has_role(request.user, access.ADMIN):
            data["driver_uri"] = shown_uri(host.driver_uri)  # its query may name the console's key files
        return data

    def validate_driver_uri(self, value: str) -> str:
        try:
            return check_driver_uri(value)
        except InvalidRequest as exc:
            raise serializers.ValidationError(exc.errors["driver_uri"]) from None

    def validate(self, attrs: dict) -> dict:
        if self.instance is None and "cluster" not in attrs:
            attrs["cluster"] = Cluster.objects.order_by("id").first()
            if attrs["cluster"] is None:
                raise serializers.ValidationError({"cluster": ["no cluster exists yet; create one first"]})
        return attrs


class StorageContainerSerializer(serializers.ModelSerializer):
    cluster = by_uuid(Cluster.objects.all())

    class Meta:
        model = StorageContainer
        fields = ["uuid", "name", "cluster", "path", "capacity_bytes"]

    def validate_path(self, value: str) -> str:
        if not value.startswith("/") or ".." in value.split("/"):
            raise serializers.ValidationError("give an absolute path without '..'")
        return value


class ImageSerializer(serializers.ModelSerializer):
    container = serializers.SlugRelatedField(source="storage_container", slug_field="uuid", read_only=True)

    class Meta:
        model = Image
        fields = ["uuid", "name", "kind", "container", "size_bytes", "disk_format", "sha256", "created_at"]


class NetworkSerializer(serializers.ModelSerializer):
    cluster = by_uuid(Cluster.objects.all())

    class Meta:
        model = Network
        fields = ["uuid", "name", "cluster", "vlan", "cidr", "gateway", "dns_servers", "pool_start", "pool_end"]

    def validate(self, attrs):
        current = {} if self.instance is None else NetworkSerializer(self.instance).data
        values = {**current, **attrs}
        try:
            attrs["cidr"] = check_addressing(values.get("cidr", ""), values.get("gateway"), values.get("pool_start"),
                                             values.get("pool_end"), values.get("dns_servers", ""))
        except InvalidRequest as error:
            raise serializers.ValidationError(error.errors) from None
        return attrs


class NicSerializer(serializers.ModelSerializer):
    network = serializers.SlugRelatedField(slug_field="uuid", read_only=True)
    network_name = serializers.CharField(source="network.name", read_only=True)
    ips = serializers.SerializerMethodField()

    class Meta:
        model = Nic
        fields = ["index", "network", "network_name", "mac", "ip", "ips"]

    def get_ips(self, nic: Nic) -> list[str]:
        return [nic.ip] if nic.ip else []


class DiskSerializer(serializers.ModelSerializer):
    container = serializers.SlugRelatedField(source="storage_container", slug_field="uuid", read_only=True)

    class Meta:
        model = VirtualDisk
        fields = ["uuid", "index", "size_bytes", "container", "file_name", "backing_file"]


class CdRomSerializer(serializers.ModelSerializer):
    image = serializers.SlugRelatedField(slug_field="uuid", read_only=True, allow_null=True)

    class Meta:
        model = CdRom
        fields = ["slot", "iso_path", "purpose", "image"]


class HostRefSerializer(serializers.ModelSerializer):
    class Meta:
        model = Host
        fields = ["uuid", "name"]


class VMSerializer(serializers.ModelSerializer):
    cluster = serializers.SlugRelatedField(slug_field="uuid", read_only=True)
    host = HostRefSerializer(read_only=True, allow_null=True)
    parent = serializers.SlugRelatedField(slug_field="uuid", read_only=True, allow_null=True)
    nics = NicSerializer(many=True, read_only=True)
    disks = DiskSerializer(many=True, read_only=True)
    cdroms = CdRomSerializer(many=True, read_only=True)

    class Meta:
        model = VM
        fields = ["uuid", "name", "hostname", "description", "cluster", "host", "power_state", "vcpus",
                  "memory_bytes", "guest_os", "is_template", "parent", "nics", "disks", "cdroms",
                  "created_at", "updated_at"]


class DiskSpecSerializer(serializers.Serializer):
    size_bytes = serializers.IntegerField(min_value=1)


class NicSpecSerializer(serializers.Serializer):
    network = by_uuid(Network.objects.all())
    ip = serializers.CharField(required=False, allow_null=True, allow_blank=True,
                               help_text="Omit for DHCP, 'auto' for the next free pool address, or an address")
    mac = serializers.CharField(required=False, allow_null=True, allow_blank=True)


class VMCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=80)
    hostname = serializers.CharField(max_length=63, required=False, allow_blank=True, default="")
    description = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")
    cluster = by_uuid(Cluster.objects.all(), required=False, allow_null=True)
    host = by_uuid(Host.objects.all(), required=False, allow_null=True, help_text="Omit for automatic placement")
    image = by_uuid(Image.objects.all(), required=False, allow_null=True)
    container = by_uuid(StorageContainer.objects.all(), required=False, allow_null=True)
    vcpus = serializers.IntegerField()  # its range is the service's to check
    memory_bytes = serializers.IntegerField(min_value=1)
    guest_os = serializers.ChoiceField(choices=VM.GuestOS.choices, default=VM.GuestOS.LINUX)
    is_template = serializers.BooleanField(default=False)
    power_on = serializers.BooleanField(default=False)
    disks = DiskSpecSerializer(many=True, required=False, default=list)
    nics = NicSpecSerializer(many=True, required=False, default=list)


    def get_fields(self):
        return with_vm_options(super().get_fields())


def with_vm_options(fields: dict) -> dict:
    """The fields of a create or clone request, plus the parts other apps own (registry.vm_options)."""
    return {**fields, **{name: option.api_field() for name, option in registry.vm_options.items()}}


def vm_options(data: dict) -> dict:
    """A create or clone request's validated option fields, as `VMSpec.options` takes them."""
    return {name: option.from_api(data.get(name)) for name, option in registry.vm_options.items()}


class PowerSerializer(serializers.Serializer):
    action = serializers.CharField(help_text=f"{', '.join(POWER_ACTIONS)}, or guest-shutdown, guest-reboot "
                                             "(through the Guest Tools agent)")


class CloneSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=80)
    host = by_uuid(Host.objects.all(), required=False, allow_null=True)
    linked = serializers.BooleanField(default=False, help_text="Linked clone: disks start as overlays of the source")
    power_on = serializers.BooleanField(default=False)
    hostname = serializers.CharField(max_length=63, required=False, allow_blank=True, default="",
                                     help_text="Defaults to the name")
    snapshot = by_uuid(Snapshot.objects.all(), required=False, allow_null=True,
                       help_text="A snapshot of the source VM: the clone's disks are the snapshot's")

    def get_fields(self):
        return with_vm_options(super().get_fields())


class BulkCloneSerializer(serializers.Serializer):
    """`POST /api/v1/vms/{uuid}/bulk-clone/`: see console/services/bulk_clone.py. The ranges are the service's
    to check (it says the limit)."""

    count = serializers.IntegerField()
    name_pattern = serializers.CharField(max_length=200, help_text="With {n}, e.g. web-{n:03}")
    start_index = serializers.IntegerField(default=1)
    placement = serializers.DictField(default=dict, help_text='{"policy": "spread"} (default) or {"host": UUID}')
    linked = serializers.BooleanField(default=False, help_text="Linked clones: disks start as overlays of the source")
    per_clone = serializers.ListField(child=serializers.DictField(), required=False, allow_null=True,
                                      help_text="One object per clone: name, hostname, ip, and key-values")
    per_clone_csv = serializers.CharField(required=False, allow_null=True, trim_whitespace=False,
                                          help_text="A table: header name,hostname,ip,KEY... and one row per clone")
    power_on = serializers.BooleanField(default=False)

    def get_fields(self):
        return with_vm_options(super().get_fields())


class BulkSerializer(serializers.Serializer):
    action = serializers.CharField()
    uuids = serializers.ListField(child=serializers.UUIDField(), required=False, max_length=10_000)
    filter = serializers.DictField(required=False, help_text=(
        "VM list filters, as in GET /api/v1/vms/ (search, power_state, host, cluster, is_template, guest_os, ...); "
        "an unknown key is a 400"))
    all = serializers.BooleanField(default=False, help_text="with an empty filter: yes, every VM")
    confirm_count = serializers.IntegerField(required=False, min_value=0, help_text=(
        "the number of VMs the action is meant for; refused if the selection holds another number, and needed "
        "to delete more than 5 VMs"))
    params = serializers.DictField(required=False, help_text="The action's parameters (guest-tools-mount: "
                                                             "config_only)")

    def validate(self, attrs):
        if ("uuids" in attrs) == ("filter" in attrs):
            raise serializers.ValidationError({"uuids": "give either 'uuids' or 'filter', not both or neither"})
        if attrs["all"] and "filter" not in attrs:
            raise serializers.ValidationError({"all": "'all' goes with a filter"})
        return attrs


class InsertIsoSerializer(serializers.Serializer):
    image = by_uuid(Image.objects.all())  # the service explains why a disk image does not fit
    slot = serializers.IntegerField(min_value=0, max_value=CDROM_SLOTS - 1, required=False, allow_null=True)


class EjectIsoSerializer(serializers.Serializer):
    slot = serializers.IntegerField(min_value=0, max_value=CDROM_SLOTS - 1)


class TaskChildSerializer(serializers.ModelSerializer):
    class Meta:
        model = Task
        fields = ["uuid", "kind", "status", "percent", "message", "error", "entity_name", "entity_uuid"]


class TaskSerializer(serializers.ModelSerializer):
    entity = serializers.SerializerMethodField()
    parent = serializers.SlugRelatedField(slug_field="uuid", read_only=True, allow_null=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = Task
        fields = ["uuid", "kind", "status", "percent", "message", "error", "entity", "parent", "params",
                  "attempts", "created_by", "created_at", "started_at", "heartbeat_at", "finished_at"]

    def get_entity(self, task: Task) -> dict:
        return {"type": task.entity_type, "uuid": task.entity_uuid, "name": task.entity_name}


class TaskDetailSerializer(TaskSerializer):
    children = TaskChildSerializer(many=True, read_only=True)

    class Meta(TaskSerializer.Meta):
        fields = [*TaskSerializer.Meta.fields, "children"]


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = ["id", "time", "username", "action", "entity_type", "entity_uuid", "entity_name",
                  "source_address", "detail"]


class TokenSerializer(serializers.ModelSerializer):
    user = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = ApiToken
        fields = ["uuid", "name", "user", "hint", "created_at", "last_used_at", "revoked_at"]
        read_only_fields = ["uuid", "user", "hint", "created_at", "last_used_at", "revoked_at"]


class ObtainTokenSerializer(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False)
    name = serializers.CharField(max_length=64, required=False, default="cli")


class UserSerializer(serializers.ModelSerializer):
    role = serializers.SerializerMethodField()

    class Meta:
        model = User
        fields = ["id", "username", "email", "is_active", "role", "last_login"]

    def get_role(self, user: User) -> str | None:
        return role_of(user)


# Day-2 operations (console/services/vm_edit.py, vm_devices.py, image_import.py, adopt.py).


class VMDetailSerializer(VMSerializer):
    """One VM, with what its edit form needs: the changes waiting for a power cycle, the maxima the running
    guest can grow to, the boot order, whether it is restarted elsewhere when its host fails, and the version
    (also its ETag)."""

    class Meta(VMSerializer.Meta):
        fields = [*VMSerializer.Meta.fields, "max_vcpus", "max_memory_bytes", "pending", "boot_order",
                  "high_availability", "version"]


class VMUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=80, required=False)
    description = serializers.CharField(max_length=255, required=False, allow_blank=True)
    vcpus = serializers.IntegerField(required=False)  # its range is the service's to check, against the host
    memory_bytes = serializers.IntegerField(required=False)
    boot_order = serializers.ListField(child=serializers.CharField(), required=False,
                                       help_text="e.g. [\"hd\", \"cdrom\"]: hd, cdrom, network")
    high_availability = serializers.BooleanField(
        required=False, help_text="Restarted on another host when its host fails (if its disks are reachable there)")


class DiskAddSerializer(serializers.Serializer):
    size_bytes = serializers.IntegerField(required=False, allow_null=True,
                                          help_text="Required for an empty disk; for an image, at least its size")
    image = by_uuid(Image.objects.all(), required=False, allow_null=True, help_text="A disk image to copy")
    linked = serializers.BooleanField(default=False, help_text="A qcow2 overlay of the image instead of a copy")
    storage_container = by_uuid(StorageContainer.objects.all(), required=False, allow_null=True)


class DiskGrowSerializer(serializers.Serializer):
    size_bytes = serializers.IntegerField()


class NicAddSerializer(NicSpecSerializer):
    pass  # a NIC added to a VM has the fields it has at create; its own class keeps its name in the API schema


class NicUpdateSerializer(serializers.Serializer):
    network = by_uuid(Network.objects.all())
    ip = serializers.CharField(required=False, allow_null=True, allow_blank=True)


class ImageImportSerializer(serializers.Serializer):
    url = serializers.CharField(max_length=2048)
    sha256 = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
    name = serializers.CharField(max_length=63, required=False, allow_blank=True, default="",
                                 help_text="Defaults to the URL's file name")
    kind = serializers.ChoiceField(choices=Image.Kind.choices, required=False, allow_blank=True, default="",
                                   help_text="Defaults to iso for a .iso URL, else disk")
    storage_container = by_uuid(StorageContainer.objects.all(), required=False, allow_null=True)


class AdoptSerializer(serializers.Serializer):
    uuid = serializers.UUIDField(help_text="The unmanaged domain's uuid")
    name = serializers.CharField(max_length=80, required=False, allow_blank=True, default="",
                                 help_text="Defaults to the domain's name")

from django.contrib.auth.models import User
from rest_framework import serializers

from console.core import access
from console.core.access import role_of
from console.core.drivers import shown_uri
from console.core.drivers.base import POWER_ACTIONS
from console.core.errors import InvalidRequest
from console.core.models import ApiToken, AuditEvent, Task
from console.core.registry import registry

from ..models import VM, CdRom, Cluster, Host, Image, Network, Nic, StorageContainer, VirtualDisk
from ..services.networks import check_addressing


def by_uuid(queryset, **kwargs) -> serializers.SlugRelatedField:
    return serializers.SlugRelatedField(slug_field="uuid", queryset=queryset, **kwargs)


class ClusterSerializer(serializers.ModelSerializer):
    class Meta:
        model = Cluster
        fields = ["uuid", "name", "virtual_ip", "created_at"]


class HostSerializer(serializers.ModelSerializer):
    cluster = by_uuid(Cluster.objects.all())

    class Meta:
        model = Host
        fields = ["uuid", "name", "cluster", "address", "driver_uri", "cpus", "memory_bytes", "enabled", "queue"]
        extra_kwargs = {"driver_uri": {"help_text": "in full for Admins; others read scheme, host and path"}}

    def to_representation(self, host):
        data = super().to_representation(host)
        request = self.context.get("request")
        if request is None or not access.has_role(request.user, access.ADMIN):
            data["driver_uri"] = shown_uri(host.driver_uri)  # its query may name the console's key files
        return data


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
    container = serializers.SlugRelatedField(slug_field="uuid", read_only=True)

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
    container = serializers.SlugRelatedField(slug_field="uuid", read_only=True)

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

    def validate(self, attrs):
        if ("uuids" in attrs) == ("filter" in attrs):
            raise serializers.ValidationError({"uuids": "give either 'uuids' or 'filter', not both or neither"})
        if attrs["all"] and "filter" not in attrs:
            raise serializers.ValidationError({"all": "'all' goes with a filter"})
        return attrs


class InsertIsoSerializer(serializers.Serializer):
    image = by_uuid(Image.objects.all())  # the service explains why a disk image does not fit
    slot = serializers.IntegerField(min_value=0, max_value=3, required=False, allow_null=True)


class EjectIsoSerializer(serializers.Serializer):
    slot = serializers.IntegerField(min_value=0, max_value=3)


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

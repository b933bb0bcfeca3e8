"""The console's URLs plus `/bench/bare/vms/`: a bare DRF `ListAPIView` over the same VM table, the
yardstick `bench/api_list.py` measures `GET /api/v1/vms/` against.

The bare view returns the same JSON as `VMSerializer` (nested host, NICs, disks, CD-ROMs, fetched with
select_related/prefetch_related) from plain ModelSerializers: the ordinary DRF way, which the real list
left for plain rows (`console/api/vm_list.py`). It paginates 100 per page and has token authentication
only: no filter, search or ordering backends, no role check, no browsable API. It ignores the filter
parameters the benchmark sends, so it always lists VMs in the model's order."""

from django.db.models import Prefetch
from django.urls import path
from rest_framework import generics, serializers
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer

from console.core.api.authentication import ApiTokenAuthentication
from console.models import VM, CdRom, Host, Nic, VirtualDisk
from console.urls import urlpatterns as console_urlpatterns


class BareNicSerializer(serializers.ModelSerializer):
    network = serializers.SlugRelatedField(slug_field="uuid", read_only=True)
    network_name = serializers.CharField(source="network.name", read_only=True)
    ips = serializers.SerializerMethodField()

    class Meta:
        model = Nic
        fields = ["index", "network", "network_name", "mac", "ip", "ips"]

    def get_ips(self, nic):
        return [nic.ip] if nic.ip else []


class BareDiskSerializer(serializers.ModelSerializer):
    container = serializers.SlugRelatedField(slug_field="uuid", read_only=True)

    class Meta:
        model = VirtualDisk
        fields = ["uuid", "index", "size_bytes", "container", "file_name", "backing_file"]


class BareCdRomSerializer(serializers.ModelSerializer):
    image = serializers.SlugRelatedField(slug_field="uuid", read_only=True)

    class Meta:
        model = CdRom
        fields = ["slot", "iso_path", "purpose", "image"]


class BareHostSerializer(serializers.ModelSerializer):
    class Meta:
        model = Host
        fields = ["uuid", "name"]


class BareVMSerializer(serializers.ModelSerializer):
    cluster = serializers.SlugRelatedField(slug_field="uuid", read_only=True)
    host = BareHostSerializer(read_only=True)
    parent = serializers.SlugRelatedField(slug_field="uuid", read_only=True)
    nics = BareNicSerializer(many=True, read_only=True)
    disks = BareDiskSerializer(many=True, read_only=True)
    cdroms = BareCdRomSerializer(many=True, read_only=True)

    class Meta:
        model = VM
        fields = ["uuid", "name", "hostname", "description", "cluster", "host", "power_state", "vcpus",
                  "memory_bytes", "guest_os", "is_template", "parent", "nics", "disks", "cdroms",
                  "created_at", "updated_at"]


class BarePagination(PageNumberPagination):
    page_size = 100


class BareVMList(generics.ListAPIView):
    queryset = VM.objects.select_related("cluster", "host", "parent").prefetch_related(
        Prefetch("nics", queryset=Nic.objects.select_related("network")),
        "disks__container", "cdroms__image")
    serializer_class = BareVMSerializer
    pagination_class = BarePagination
    authentication_classes = [ApiTokenAuthentication]
    permission_classes = [IsAuthenticated]
    filter_backends: list = []
    renderer_classes = [JSONRenderer]


urlpatterns = [path("bench/bare/vms/", BareVMList.as_view(), name="bench-bare-vms"), *console_urlpatterns]

"""Filters of the volume group and Docker host lists, shared by the REST API and the console pages."""

import django_filters as filters

from .models import DockerHost, VolumeGroup


class VolumeGroupFilterSet(filters.FilterSet):
    search = filters.CharFilter(field_name="name", lookup_expr="icontains", label="Name contains")
    state = filters.ChoiceFilter(choices=VolumeGroup.State.choices)
    docker = filters.BooleanFilter(method="filter_docker", label="Backs a Docker volume")

    class Meta:
        model = VolumeGroup
        fields = ["search", "state", "docker"]

    def filter_docker(self, queryset, name, value):
        return queryset.exclude(docker_volume="") if value else queryset.filter(docker_volume="")


class DockerHostFilterSet(filters.FilterSet):
    search = filters.CharFilter(field_name="name", lookup_expr="icontains", label="Name contains")
    kind = filters.ChoiceFilter(choices=DockerHost.Kind.choices)
    state = filters.ChoiceFilter(choices=DockerHost.State.choices)

    class Meta:
        model = DockerHost
        fields = ["search", "kind", "state"]

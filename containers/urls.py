"""Console pages of this app (included at the site root by console/urls.py)."""

from django.urls import path

from . import views

UUID = "<uuid:uuid>"

urlpatterns = [
    path("volume-groups/", views.volume_group_list, name="volume-groups"),
    path("volume-groups/new/", views.volume_group_create, name="volume-group-create"),
    path("volume-groups/attach-targets/", views.attach_targets, name="volume-group-attach-targets"),
    path(f"vms/{UUID}/volume-groups/", views.vm_panel, name="volume-groups-panel"),
    path(f"volume-groups/{UUID}/", views.volume_group_detail, name="volume-group-detail"),
    path(f"volume-groups/{UUID}/attach/", views.volume_group_attach, name="volume-group-attach"),
    path(f"volume-groups/{UUID}/detach/", views.volume_group_detach, name="volume-group-detach"),
    path(f"volume-groups/{UUID}/grow/", views.volume_group_grow, name="volume-group-grow"),
    path(f"volume-groups/{UUID}/share/", views.volume_group_share, name="volume-group-share"),
    path(f"volume-groups/{UUID}/delete/", views.volume_group_delete, name="volume-group-delete"),
    path("docker-hosts/", views.docker_host_list, name="docker-hosts"),
    path("docker-hosts/register/", views.docker_host_register, name="docker-host-register"),
    path("docker-hosts/new/", views.docker_host_create, name="docker-host-create"),
    path(f"docker-hosts/{UUID}/", views.docker_host_detail, name="docker-host-detail"),
    path(f"docker-hosts/{UUID}/remove/", views.docker_host_remove, name="docker-host-remove"),
    path(f"docker-hosts/{UUID}/key/", views.docker_host_key, name="docker-host-key"),
    path(f"docker-hosts/{UUID}/key/regenerate/", views.docker_host_regenerate_key, name="docker-host-regenerate-key"),
    path("docker-hosts/plugin.deb", views.docker_host_plugin_package, name="docker-host-plugin-package"),
]

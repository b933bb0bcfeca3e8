"""REST endpoints of this app (included under /api/v1/ by console/api/urls.py)."""

from django.urls import path

from . import views

VM_TOOLS = "vms/<uuid:uuid>/guest-tools/"

urlpatterns = [
    path("guest-tools/", views.GuestToolsList.as_view(), name="api-guest-tools-list"),
    path("guest-tools/ca/", views.CertificateAuthorityDetail.as_view(), name="api-guest-tools-ca"),
    path("guest-tools/leader/", views.LeaderLocation.as_view(), name="api-guest-tools-leader"),
    path(VM_TOOLS, views.GuestToolsDetail.as_view(), name="api-guest-tools"),
    path(VM_TOOLS + "enable/", views.Enable.as_view(), name="api-guest-tools-enable"),
    path(VM_TOOLS + "mount/", views.Mount.as_view(), name="api-guest-tools-mount"),
    path(VM_TOOLS + "unmount/", views.Unmount.as_view(), name="api-guest-tools-unmount"),
    path(VM_TOOLS + "disable/", views.Disable.as_view(), name="api-guest-tools-disable"),
]

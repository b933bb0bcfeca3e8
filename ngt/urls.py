"""Console pages of this app (included at the site root by console/urls.py)."""

from django.urls import path

from . import views

urlpatterns = [
    path("guest-tools/", views.guest_tools_page, name="guest-tools"),
    path("vms/<uuid:uuid>/guest-tools/panel/", views.guest_tools_panel, name="guest-tools-panel"),
    path("vms/<uuid:uuid>/guest-tools/capabilities/", views.guest_tools_capabilities,
         name="guest-tools-capabilities"),
    path("vms/<uuid:uuid>/guest-tools/<str:operation>/", views.guest_tools_operation, name="guest-tools-operation"),
]

"""Console pages of this app (included at the site root by console/urls.py)."""

from django.urls import path

from . import views

UUID = "<uuid:uuid>"

urlpatterns = [
    path("customization-scripts/", views.script_library, name="customization-scripts"),
    path("customization-scripts/new/", views.script_create, name="customization-script-create"),
    path("customization-scripts/upload/", views.script_upload, name="customization-script-upload"),
    path("customization-scripts/sysprep/", views.sysprep_generate, name="customization-sysprep"),
    path(f"customization-scripts/{UUID}/", views.script_detail, name="customization-script"),
    path(f"customization-scripts/{UUID}/delete/", views.script_delete, name="customization-script-delete"),
    path("customization/validate/", views.validate_live, name="customization-validate"),
    path("customization/phone-home/<str:token>/", views.phone_home, name="customization-phone-home"),
    path(f"vms/{UUID}/customization/panel/", views.vm_panel, name="customization-panel"),
]

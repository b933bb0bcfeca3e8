"""REST endpoints of this app (included under /api/v1/ by console/api/urls.py)."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
router.register("customization-scripts", views.ScriptViewSet, basename="customizationscript")

urlpatterns = [
    path("vms/<uuid:uuid>/customization/", views.VMCustomizationView.as_view(), name="vm-customization"),
    *router.urls,
]

"""The site's URLs with this app's first, so that `/guest-tools/` reaches the Guest Tools page even while the
console still holds its placeholder under that path."""

from django.urls import include, path

urlpatterns = [
    path("", include("ngt.urls")),
    path("", include("console.urls")),
]

"""The site's URLs with this app's pages first, as they will be once the console's placeholders for
"Volume Groups" and "Docker Hosts" are removed."""

from django.urls import include, path

urlpatterns = [path("", include("containers.urls")), path("", include("console.urls"))]

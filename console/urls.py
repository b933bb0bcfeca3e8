from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from console.forms.login import AdminLoginForm

admin.site.login_form = AdminLoginForm  # limited by the shared login counter, as the console's own login

urlpatterns = [
    path("api/v1/", include("console.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("admin/", admin.site.urls),
    path("", include("console.views.urls")),
    path("", include("ngt.urls")),
    path("", include("customization.urls")),
    path("", include("containers.urls")),
]

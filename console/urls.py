"""The console's URLs: the API, its schema and docs, the admin, the inventory's pages and every other
app's, as each registered them (`registry.urls`)."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from console.core.registry import registry
from console.forms.login import AdminLoginForm

handler400 = "console.core.api.errors.bad_request"
handler403 = "console.core.api.errors.permission_denied"
handler404 = "console.core.api.errors.not_found"
handler500 = "console.core.api.errors.server_error"
admin.site.login_form = AdminLoginForm  # limited by the shared login counter, as the console's own login

urlpatterns = [
    path("api/v1/", include("console.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("admin/", admin.site.urls),
    path("", include("console.views.urls")),
    *(path("", include(module)) for module in registry.urls.values()),
]

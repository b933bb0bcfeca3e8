from collections import defaultdict
from collections.abc import Callable

from django.db.models import ProtectedError, RestrictedError
from django.http import JsonResponse
from django.views import defaults
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from ..drivers import DriverError
from ..errors import ServiceError


def exception_handler(exc, context):
    """Service errors become JSON with a message per field and their own status (400, 409, 413)."""
    if isinstance(exc, ServiceError):
        return Response(exc.errors, status=exc.status_code)
    if isinstance(exc, DriverError):
        return Response({"detail": [str(exc)]}, status=409)
    if isinstance(exc, ProtectedError | RestrictedError):
        return Response({"detail": [still_used(exc)]}, status=409)
    return drf_exception_handler(exc, context)


NAMES_SHOWN = 3


def still_used(exc: ProtectedError | RestrictedError) -> str:
    """What keeps a record from being deleted: a count and the first names per kind of user, e.g. "still
    used by 2 VMs (web-1, web-2); delete or move those first"."""
    users = defaultdict(list)
    for user in exc.protected_objects if isinstance(exc, ProtectedError) else exc.restricted_objects:
        users[user._meta].append(user)
    parts = []
    for meta, objects in sorted(users.items(), key=lambda item: str(item[0].verbose_name_plural)):
        kind = meta.verbose_name if len(objects) == 1 else meta.verbose_name_plural
        # str() of only the few shown: a NIC's name reads its VM's.
        shown = ", ".join(str(o) for o in sorted(objects, key=lambda o: o.pk)[:NAMES_SHOWN])
        parts.append(f"{len(objects)} {kind} ({shown}{', ...' if len(objects) > NAMES_SHOWN else ''})")
    return f"still used by {' and '.join(parts)}; delete or move those first"


def _json_under_api(page: Callable, status: int, detail: str) -> Callable:
    """A handler of Django's own errors (console/urls.py handler400...): under /api/ JSON, as every other API
    answer, not an HTML page."""

    def handler(request, exception=None):  # Django passes `exception` by name, and none to a 500's handler
        if request.path.startswith("/api/"):
            return JsonResponse({"detail": detail}, status=status)
        return page(request) if exception is None else page(request, exception)

    return handler


# A body Django refuses to parse (more than DATA_UPLOAD_MAX_NUMBER_FIELDS form fields...), a URL nothing serves.
bad_request = _json_under_api(defaults.bad_request, 400, "The request could not be read.")
permission_denied = _json_under_api(defaults.permission_denied, 403, "You may not do this.")
not_found = _json_under_api(defaults.page_not_found, 404, "Not found.")
server_error = _json_under_api(defaults.server_error, 500, "Server error.")

"""A cap on request bodies (FACET_REQUEST_BODY_LIMIT), decided from Content-Length before anything reads the
body: DRF reads a JSON body straight from the stream, past Django's DATA_UPLOAD_MAX_MEMORY_SIZE, so without
this one unauthenticated `POST /api/v1/auth/token/` could make a web worker hold gigabytes.

Views that stream a body (image and script uploads, which bound and check it themselves) are exempt: a
function view marked with `@streams_body`, or a DRF action whose parser class says `streams_body = True`.
Django reads no more than Content-Length, so a body without one is read as empty."""

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from console.core.units import iec


def streams_body(view: Callable) -> Callable:
    view.streams_body = True
    return view


def _streams(view: Callable) -> bool:
    parsers = getattr(view, "initkwargs", {}).get("parser_classes", ())
    return getattr(view, "streams_body", False) or any(getattr(p, "streams_body", False) for p in parsers)


class BodyLimitMiddleware:
    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view: Callable, args, kwargs) -> HttpResponse | None:
        length = request.META.get("CONTENT_LENGTH") or ""
        limit = settings.FACET_REQUEST_BODY_LIMIT
        if not length.isdigit() or int(length) <= limit or _streams(view):
            return None
        message = (f"the request body ({iec(int(length))}) is over the limit of {iec(limit)} "
                   "(FACET_REQUEST_BODY_LIMIT); images are sent to the upload endpoint")
        if request.path.startswith("/api/"):
            return JsonResponse({"detail": [message]}, status=413)
        return HttpResponse(message, status=413, content_type="text/plain; charset=utf-8")

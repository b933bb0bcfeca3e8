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
    return drf_exception_handler(exc, context)

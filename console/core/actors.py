from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import User


def client_address(request) -> str | None:
    """Where a request came from: REMOTE_ADDR, or behind FACET_NUM_PROXIES reverse proxies the address the
    outermost of them put in X-Forwarded-For. Entries further left are written by the client and not trusted."""
    remote = request.META.get("REMOTE_ADDR")
    proxies = settings.REST_FRAMEWORK.get("NUM_PROXIES")
    forwarded = [entry.strip() for entry in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if entry.strip()]
    if not proxies or not forwarded:
        return remote
    return forwarded[-min(proxies, len(forwarded))]


@dataclass(frozen=True)
class Actor:
    """Who asks for a change and from where, for tasks and the audit log."""

    user: User | None
    source_address: str | None = None

    @classmethod
    def from_request(cls, request) -> "Actor":
        return cls(user=request.user if request.user.is_authenticated else None,
                   source_address=client_address(request))

    @classmethod
    def system(cls) -> "Actor":
        return cls(user=None, source_address=None)

from dataclasses import dataclass

from django.contrib.auth.models import User


@dataclass(frozen=True)
class Actor:
    """Who asks for a change and from where, for tasks and the audit log."""

    user: User | None
    source_address: str | None = None

    @classmethod
    def from_request(cls, request) -> "Actor":
        return cls(user=request.user if request.user.is_authenticated else None,
                   source_address=request.META.get("REMOTE_ADDR"))

    @classmethod
    def system(cls) -> "Actor":
        return cls(user=None, source_address=None)

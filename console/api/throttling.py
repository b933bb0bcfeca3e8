from rest_framework.throttling import BaseThrottle

from console.core.actors import client_address

from ..services import login_attempts


class LoginThrottle(BaseThrottle):
    """The shared login counter (services/login_attempts.py); a refusal answers 429 with Retry-After."""

    def allow_request(self, request, view) -> bool:
        self.retry_after = login_attempts.count_attempt(client_address(request))
        return self.retry_after is None

    def wait(self) -> int | None:
        return self.retry_after

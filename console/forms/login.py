"""The login forms of the console's page and of Django's admin, limited by the shared login counter."""

from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError

from console.core.actors import client_address

from ..services import login_attempts


class LimitedLogin:
    """Counts each submission before the password is checked; past the limit it is refused unchecked."""

    def clean(self):
        retry_after = login_attempts.count_attempt(client_address(self.request) if self.request else None)
        if retry_after is not None:
            raise ValidationError(login_attempts.refusal(retry_after), code="throttled")
        return super().clean()


class LoginForm(LimitedLogin, AuthenticationForm):
    error_messages = {**AuthenticationForm.error_messages, "invalid_login": "Wrong username or password."}


class AdminLoginForm(LimitedLogin, AdminAuthenticationForm):
    pass

from django.core.exceptions import ValidationError as DjangoValidationError


class ServiceError(Exception):
    """Base of the errors a service raises for the caller to show as they are."""

    status_code = 400

    def __init__(self, errors: dict[str, list[str]] | str) -> None:
        self.errors = {"detail": [errors]} if isinstance(errors, str) else errors
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in self.errors.items()))


class InvalidRequest(ServiceError):
    """The request names something wrong; errors map field names to messages."""


class Conflict(ServiceError):
    """The request is well-formed but the cluster's current state does not allow it."""

    status_code = 409


class Busy(Conflict):
    """Not now: another change of the same thing is under way, and asking again once it has ended will do."""

    status_code = 423


class TooLarge(ServiceError):
    status_code = 413


def check_field(validator, value, field_name: str) -> None:
    """Run a Django validator and report its complaint under the given field name."""
    try:
        validator(value)
    except DjangoValidationError as exc:
        raise InvalidRequest({field_name: list(exc.messages)}) from None

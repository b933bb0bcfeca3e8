"""One entry point for validating a script of either kind, from bytes or text."""

from .cloudinit import validate_user_data
from .content import Validation, as_bytes, decode
from .sysprep import validate_unattend

CLOUD_INIT, SYSPREP = "cloud-init", "sysprep"
KINDS = (CLOUD_INIT, SYSPREP)


def validate(kind: str, content: str | bytes) -> Validation:
    """Detect the format and list every problem; never raises, whatever the bytes."""
    result = Validation(format="unknown")
    text = decode(as_bytes(content), result)
    if text is None:
        return result
    if kind == SYSPREP:
        validate_unattend(text, result)
    else:
        validate_user_data(text, result)
    return result


def decoded(content: str | bytes) -> str | None:
    """The text of a script (gunzipped), or None when it would not validate at all."""
    return decode(as_bytes(content), Validation(format="unknown"))

"""One entry point for validating a script of either kind, from bytes or text."""

from .cloudinit import detect, validate_user_data
from .content import ERROR, Validation, as_bytes, decode
from .sysprep import validate_unattend

SYSPREP = "sysprep"


def validate(kind: str, content: str | bytes) -> Validation:
    """Detect the format and list every problem; never raises, whatever the bytes."""
    result = Validation(format="unknown")
    text = decode(as_bytes(content), result)
    if text is None:
        return result
    start = text.lstrip()
    if kind == SYSPREP and detect(text) != "unknown":
        result.add(1, 1, ERROR, f"this is a cloud-init script ({detect(text)}), not a Sysprep answer file: "
                                "choose the kind cloud-init")
    elif kind != SYSPREP and start.startswith("<") and "unattend" in start[:400]:
        result.add(1, 1, ERROR, "this is a Sysprep answer file, not cloud-init user data: choose the kind sysprep")
    elif kind == SYSPREP:
        validate_unattend(text, result)
    else:
        try:
            validate_user_data(text, result)
        except RecursionError:  # jinja headers or MIME archives nested thousands deep
            result.add(1, 1, ERROR, "the script nests its parts too deeply")
    return result


def decoded(content: str | bytes) -> str | None:
    """The text of a script (gunzipped), or None when it would not validate at all."""
    return decode(as_bytes(content), Validation(format="unknown"))

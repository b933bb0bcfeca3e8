"""cloud-init user data: which of its formats a script is, and what is wrong with it. Detection follows
cloud-init's own rules (the start of the text, case-insensitive; MIME when `MIME-Version:` is near the top)."""

import ast
import email
import email.policy
import re
from urllib.parse import urlsplit

from .cloud_config import validate_cloud_config
from .content import ERROR, GZIP_MAGIC, INFO, WARNING, Validation, gunzip, size_limit

# Longest first, as cloud-init matches them.
HEADERS = [
    ("#cloud-config-archive", "cloud-config-archive"),
    ("#include-once", "include-once"),
    ("#cloud-boothook", "cloud-boothook"),
    ("#part-handler", "part-handler"),
    ("#cloud-config", "cloud-config"),
    ("#upstart-job", "upstart-job"),
    ("#include", "include"),
    ("#!", "shell-script"),
]
JINJA_HEADER = re.compile(r"^##\s*template:\s*jinja[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)
CONTENT_TYPES = {
    "text/cloud-config": "cloud-config",
    "text/cloud-config-archive": "cloud-config-archive",
    "text/x-shellscript": "shell-script",
    "text/x-shellscript-per-boot": "shell-script",
    "text/x-shellscript-per-instance": "shell-script",
    "text/x-shellscript-per-once": "shell-script",
    "text/x-include-url": "include",
    "text/x-include-once-url": "include-once",
    "text/cloud-boothook": "cloud-boothook",
    "text/part-handler": "part-handler",
    "text/jinja2": "jinja",
    "text/upstart-job": "upstart-job",
}
KNOWN = ", ".join(h for h, _ in reversed(HEADERS)) + ", ## template: jinja, or a MIME multipart archive"


def detect(text: str, mime: bool = True) -> str:
    """The cloud-init format of a text, or "unknown". Inside a MIME part cloud-init looks at the start
    only (`mime=False`): a part is never an archive of its own."""
    if mime and "mime-version:" in text[:4096].lower():
        return "mime-multipart"
    if JINJA_HEADER.match(text.lstrip()):
        return "jinja"
    start = text.lstrip().lower()
    return next((name for header, name in HEADERS if start.startswith(header)), "unknown")


def validate_user_data(text: str, result: Validation, format_name: str | None = None) -> None:
    """Add the problems of a cloud-init text to `result`, as the format it declares (or is said to be)."""
    name = format_name or detect(text)
    result.format = name if result.format in ("", "unknown") else f"{result.format}+{name}"
    CHECKS.get(name, _unknown)(text, result)


def _unknown(text: str, result: Validation) -> None:
    result.add(1, 1, ERROR, f"not a cloud-init format: start with {KNOWN}")


def _shell_script(text: str, result: Validation) -> None:
    first = text.lstrip().split("\n", 1)[0]
    if first.endswith("\r"):
        result.add(1, len(first), ERROR, "Windows line endings: the interpreter would be looked up as "
                                         f"{first[2:].strip()!r} plus a carriage return")
    if not first[2:].strip().startswith("/"):
        result.add(1, 3, ERROR, "give the interpreter's absolute path after '#!' (such as #!/bin/sh)")


def _include(text: str, result: Validation) -> None:
    lines = text.lstrip().split("\n")
    urls = 0
    for number, line in enumerate(lines[1:], start=2):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        parts = urlsplit(entry)
        if parts.scheme not in ("http", "https") or not parts.netloc or " " in entry:
            result.add(number, line.index(entry[0]) + 1, ERROR, f"not an http(s) URL: {entry[:80]!r}")
        urls += 1
    if not urls:
        result.add(1, 1, WARNING, "the include list names no URL")
    else:
        result.add(1, 1, INFO, "the console does not fetch included URLs; the guest does, at boot")


def _header_only(text: str, result: Validation) -> None:
    result.add(1, 1, INFO, f"{result.format.split('+')[-1]}: only the header is checked")


def _part_handler(text: str, result: Validation) -> None:
    try:
        tree = ast.parse(text, "part-handler")
    except SyntaxError as exc:
        result.add(exc.lineno or 1, exc.offset or 1, ERROR, f"Python: {exc.msg}")
        return
    except (ValueError, RecursionError, MemoryError):
        result.add(1, 1, ERROR, "Python: the handler cannot be parsed")
        return
    defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    for needed in ("list_types", "handle_part"):
        if needed not in defined:
            result.add(1, 1, ERROR, f"a part handler defines {needed}()")


def _jinja(text: str, result: Validation) -> None:
    header_end = text.find("\n", text.index("#"))
    rest = "" if header_end < 0 else text[header_end + 1:]
    if not rest.strip():
        result.add(1, 1, ERROR, "nothing follows the jinja header")
        return
    offset = text.count("\n", 0, header_end + 1)
    inner = Validation(format="")
    if "{{" in rest or "{%" in rest:
        # cloud-init renders the template at boot, with the instance's data; only the header of what
        # it renders to can be checked here.
        inner.format = detect(rest)
        if inner.format == "unknown":
            _unknown(rest, inner)
        else:
            inner.add(1, 1, INFO, f"jinja template of a {inner.format}: checked after rendering, at boot")
    else:
        validate_user_data(rest, inner)
    result.format = f"jinja+{inner.format}"
    result.extend(inner.problems, line_offset=offset)


def _cloud_config(text: str, result: Validation) -> None:
    validate_cloud_config(text, result)


def _mime(text: str, result: Validation) -> None:
    message = email.message_from_string(text, policy=email.policy.compat32)
    if message.defects:
        result.add(1, 1, ERROR, f"MIME: {message.defects[0].__class__.__name__}")
    parts = [p for p in message.walk() if not p.is_multipart()]
    if not message.is_multipart():
        result.add(1, 1, ERROR, "MIME: the archive is not multipart (Content-Type: multipart/mixed)")
        return
    if not parts:
        result.add(1, 1, ERROR, "MIME: the archive holds no part")
    for number, part in enumerate(parts, start=1):
        _mime_part(text, number, part, result)


def _mime_part(text: str, number: int, part, result: Validation) -> None:
    content_type = part.get_content_type()
    payload = part.get_payload(decode=True) or b""
    if payload.startswith(GZIP_MAGIC) or content_type in ("application/x-gzip", "application/gzip"):
        payload = gunzip(payload, size_limit()) or b""
    try:
        body = payload.decode("utf-8")
    except UnicodeDecodeError:
        result.add(1, 1, ERROR, f"part {number} ({content_type}): not UTF-8 text")
        return
    raw = part.get_payload(decode=False)
    start = text.find(raw) if isinstance(raw, str) and raw.strip() else -1
    offset = text.count("\n", 0, start) if start >= 0 else 0
    inner = Validation(format="")
    name = CONTENT_TYPES.get(content_type) or detect(body, mime=False)
    if content_type not in CONTENT_TYPES and content_type not in ("text/plain", "text/x-not-multipart"):
        inner.add(1, 1, WARNING, f"cloud-init has no handler for {content_type}; the part is ignored")
    elif not body.strip():
        inner.add(1, 1, WARNING, "the part is empty")
    else:
        validate_user_data(body, inner, name)
    where = "" if start >= 0 else f"part {number} "
    result.extend(inner.problems, line_offset=offset, prefix=f"{where}({content_type}): ")


CHECKS = {
    "cloud-config": _cloud_config,
    "cloud-config-archive": _header_only,
    "shell-script": _shell_script,
    "include": _include,
    "include-once": _include,
    "cloud-boothook": _header_only,
    "upstart-job": _header_only,
    "part-handler": _part_handler,
    "jinja": _jinja,
    "mime-multipart": _mime,
}

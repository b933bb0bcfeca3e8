"""What every script goes through first, whatever its kind: the size limit, gzip, and the text encoding.
Problems carry a line, a column, a severity and a message, the way an editor shows them."""

import os
import zlib
from dataclasses import asdict, dataclass, field

from django.conf import settings

ERROR, WARNING, INFO = "error", "warning", "info"
GZIP_MAGIC = b"\x1f\x8b"
DEFAULT_LIMIT = 64 * 1024


def size_limit() -> int:
    """Most bytes a script may hold once decompressed: the setting or environment variable
    FACET_CUSTOMIZATION_MAX_BYTES, else 64 KiB."""
    configured = getattr(settings, "FACET_CUSTOMIZATION_MAX_BYTES", None)
    return int(configured or os.environ.get("FACET_CUSTOMIZATION_MAX_BYTES") or DEFAULT_LIMIT)


@dataclass(frozen=True)
class Problem:
    line: int
    column: int
    severity: str
    message: str

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Validation:
    """The verdict on one script: its detected format and what is wrong with it."""

    format: str
    problems: list[Problem] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not any(p.severity == ERROR for p in self.problems)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    def add(self, line: int, column: int, severity: str, message: str) -> None:
        self.problems.append(Problem(max(1, line), max(1, column), severity, message))

    def extend(self, problems: list[Problem], line_offset: int = 0, prefix: str = "") -> None:
        for p in problems:
            self.add(p.line + line_offset, p.column, p.severity, prefix + p.message)

    def as_dict(self) -> dict:
        problems = sorted(self.problems, key=lambda p: (p.line, p.column))
        return {"format": self.format, "valid": self.valid, "problems": [p.as_dict() for p in problems]}


def position_of(data: bytes | str, offset: int) -> tuple[int, int]:
    """1-based line and column of an offset (in bytes or characters, as the data is)."""
    newline = b"\n" if isinstance(data, bytes) else "\n"
    line_start = data.rfind(newline, 0, offset) + 1
    return data.count(newline, 0, offset) + 1, offset - line_start + 1


def gunzip(data: bytes, limit: int) -> bytes | None:
    """The decompressed bytes, at most limit + 1 of them (a gzip bomb stops there); None when corrupt."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        return inflater.decompress(data, limit + 1)
    except zlib.error:
        return None


def decode(data: bytes, result: Validation) -> str | None:
    """The script as text, or None with the reason added to `result` (oversized, binary, not UTF-8)."""
    limit = size_limit()
    if data.startswith(GZIP_MAGIC):
        unpacked = gunzip(data, limit)
        if unpacked is None:
            result.add(1, 1, ERROR, "gzip data is corrupt")
            return None
        result.format = "gzip"
        data = unpacked
    if len(data) > limit:
        result.add(1, 1, ERROR, f"the script is over the limit of {limit // 1024} KiB"
                                + (" once decompressed" if result.format == "gzip" else ""))
        return None
    if b"\x00" in data:
        result.add(*position_of(data, data.index(b"\x00")), ERROR, "binary content (NUL byte): give a text script")
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        result.add(*position_of(data, exc.start), ERROR, "not UTF-8 text: save the script as UTF-8")
        return None
    if not text.strip():
        result.add(1, 1, ERROR, "the script is empty")
        return None
    return text


def as_bytes(content: str | bytes) -> bytes:
    # surrogatepass: a lone surrogate (JSON allows "\ud800") becomes bytes that fail as "not UTF-8".
    return content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass")

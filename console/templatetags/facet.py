from django import template

register = template.Library()

UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]


@register.filter
def iec(value) -> str:
    """Bytes as people read them: 4 GiB, 512 MiB, 1.5 TiB."""
    try:
        size = float(value or 0)
    except (TypeError, ValueError):
        return ""
    unit = 0
    while size >= 1024 and unit < len(UNITS) - 1:
        size /= 1024
        unit += 1
    text = f"{size:.1f}".rstrip("0").rstrip(".")
    return f"{text} {UNITS[unit]}"


@register.filter
def get(mapping, key):
    return mapping.get(key) if mapping else None


@register.simple_tag
def sort_link(current: str, field: str) -> str:
    """The ordering a column header links to: ascending first, then descending."""
    return f"-{field}" if current == field else field

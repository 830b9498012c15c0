"""Plain-text helpers for the app: numbers and times as people read them, and markdown escaping.

Streamlit renders message bodies as markdown; file names and library messages go through
`escape_markdown` first, so a name like `*[x](y)*.jpg` shows as typed.
"""

from __future__ import annotations

import os
import re

# CommonMark lets a backslash escape any ASCII punctuation; Streamlit adds `:emoji:` and
# `:color[text]` directives and `$math$`, which the same escape neutralises.
_MARKDOWN_SPECIAL = re.compile(r"([!-/:-@\[-`{-~])")


def escape_markdown(text: str) -> str:
    """`text` escaped so that Streamlit's markdown shows it literally."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text).replace("\n", " ")


def display_path(path: str | os.PathLike[str]) -> str:
    """A path as text that can always be shown or sent: bytes of a name that is not valid
    UTF-8 (kept exactly in the catalog) show as U+FFFD."""
    return os.fsencode(path).decode("utf-8", "replace")


def format_seconds(seconds: float | None) -> str:
    """ "0:42", "12:05", "1:02:03"; an em dash when unknown."""
    if seconds is None:
        return "—"
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_ms(seconds: float) -> str:
    """Milliseconds with a precision that suits the size."""
    ms = seconds * 1000
    return f"{ms:.1f} ms" if ms < 10 else f"{ms:.0f} ms"


def plural(count: int, noun: str) -> str:
    """ "1 result", "3 results"."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def shorten_middle(name: str, limit: int) -> str:
    """A name cut in its middle to `limit` characters, so its start and its extension both
    stay readable ("IMG_2023…0412.jpg")."""
    if len(name) <= limit:
        return name
    keep = max(limit - 1, 2)
    head = (keep + 1) // 2
    return f"{name[:head]}…{name[len(name) - (keep - head) :]}"


def format_bytes(size: int) -> str:
    """ "812 KB", "4.2 MB": file sizes as a file manager shows them (powers of 1000)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if size >= scale:
            value = size / scale
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{size} B"

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

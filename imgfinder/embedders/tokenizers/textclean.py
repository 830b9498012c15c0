"""open_clip's text cleaning, without torch: what its tokenizers do to a text before encoding.

Every cleaner first repairs mojibake (ftfy), unescapes HTML entities twice and trims.
"""

from __future__ import annotations

import html
import string
from collections.abc import Callable

from imgfinder.errors import MissingExtraError

_PUNCTUATION = str.maketrans("", "", string.punctuation)


def require_ftfy() -> None:
    """Fail early, with the extra to install, where a cleaner would need ftfy later."""
    try:
        import ftfy  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError("ftfy", "multilingual") from exc


def basic(text: str) -> str:
    import ftfy

    return html.unescape(html.unescape(ftfy.fix_text(text))).strip()


def whitespace(text: str) -> str:
    return " ".join(basic(text).split())


def lower(text: str) -> str:
    return whitespace(text).lower()


def canonicalize(text: str) -> str:
    """big_vision's prompt canonicalisation: no punctuation, lower case, single spaces."""
    text = basic(text).replace("_", " ").translate(_PUNCTUATION).lower()
    return " ".join(text.split())


#: by the names open_clip's tokenizer configs use ("clean": ...)
CLEANERS: dict[str, Callable[[str], str]] = {
    "whitespace": whitespace,
    "lower": lower,
    "canonicalize": canonicalize,
}

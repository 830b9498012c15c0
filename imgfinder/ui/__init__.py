"""Streamlit pieces of the page that app.py lays out: layout and wording, no logic."""

from pathlib import Path

#: the page's favicon, served by the page itself (a material icon would be fetched from a
#: font host, and the page must work offline)
ICON = Path(__file__).with_name("icon.png")


def asset(name: str) -> str:
    """One of the page's own scripts or style sheets, shipped beside this module (the only
    files the page reads itself)."""
    return Path(__file__).with_name(name).read_text(encoding="utf-8")

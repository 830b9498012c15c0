"""Streamlit pieces of the page that app.py lays out: layout and wording, no logic."""

from pathlib import Path

#: the page's favicon, served by the page itself (a material icon would be fetched from a
#: font host, and the page must work offline)
ICON = Path(__file__).with_name("icon.png")

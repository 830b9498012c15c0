"""Streamlit pieces of the page that app.py lays out: layout and wording, no logic."""

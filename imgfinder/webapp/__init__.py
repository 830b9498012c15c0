"""Library side of the Streamlit app: the service facade, thumbnails, upload checks, safe paths.

`app.py` only lays out widgets; everything it shows comes from here, so it can be tested
without a browser.
"""

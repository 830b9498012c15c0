# A slim CPU image for imgfinder: the page (default) or the HTTP API (`imgfinder serve`).
# No torch: searching runs on ONNX Runtime. Collections and models live in volumes.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    IMGFINDER_DATA_DIR=/data IMGFINDER_MODEL_DIR=/models IMGFINDER_COLLECTION=demo \
    IMGFINDER_HOST=127.0.0.1
WORKDIR /app
COPY requirements.txt pyproject.toml README.md ./
RUN pip install -r requirements.txt
COPY imgfinder ./imgfinder
COPY app.py ./
COPY .streamlit ./.streamlit
RUN pip install --no-deps . \
    && useradd --create-home --uid 1000 imgfinder \
    && mkdir -p /data /models && chown imgfinder /data /models
USER imgfinder
VOLUME ["/data", "/models"]
EXPOSE 8501 8000

# Loopback unless the operator says otherwise: `-e IMGFINDER_HOST=0.0.0.0` makes the page
# reachable from outside the container (put a proxy with a password in front of it).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4)"
CMD ["sh", "-c", "imgfinder demo build --if-missing && exec streamlit run app.py --server.address \"$IMGFINDER_HOST\" --server.port 8501"]

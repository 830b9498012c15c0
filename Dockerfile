# CPU image for imgfinder; the app listens on 8501 inside the container.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt pyproject.toml README.md ./
RUN pip install -r requirements.txt
COPY . .
RUN pip install --no-deps -e . && imgfinder demo build --collection /app/indexes/demo

EXPOSE 8501
# Loopback unless the operator says otherwise: `docker run -e IMGFINDER_HOST=0.0.0.0` makes the
# page reachable from outside the container (put a proxy with a password in front of it).
ENV IMGFINDER_COLLECTION=/app/indexes/demo IMGFINDER_HOST=127.0.0.1
CMD ["sh", "-c", "exec streamlit run app.py --server.address \"$IMGFINDER_HOST\" --server.port 8501"]

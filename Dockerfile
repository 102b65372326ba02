# syntax=docker/dockerfile:1
# heldar: one image for the Ray head, the Ray workers and the API (the Helm chart runs all three from it).
#   docker build -t heldar:0.1.0 .
#   docker run --rm -p 8000:8000 -v heldar-data:/data heldar:0.1.0          # all-in-one `heldar serve`
# Ray inside is exactly the version pyproject.toml pins; every process joining a cluster must match it.
# The base is pinned to an exact tag; to pin by digest, pass --build-arg PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:...
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- build: heldar and its dependencies in a virtualenv, from wheels only ---------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/heldar
WORKDIR /src
COPY pyproject.toml README.md ./
COPY heldar ./heldar
COPY actors ./actors
COPY api ./api
COPY config ./config
# Every dependency (ray, asyncpg, av, opencv, argon2-cffi, psutil, pgserver, imageio-ffmpeg) installs as a
# binary wheel, so neither stage needs a compiler; --only-binary makes a missing wheel an error, not a build.
RUN /opt/heldar/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/heldar/bin/pip install --only-binary=:all: /wheels/heldar-*.whl \
 && /opt/heldar/bin/python -c "import imageio_ffmpeg, subprocess; subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), '-version'], check=True, capture_output=True)" \
 && /opt/heldar/bin/heldar config > /dev/null \
 && /opt/heldar/bin/ray --version

# --- runtime: the virtualenv on a clean base; no compiler, no build tools, no source tree -------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="heldar" \
      org.opencontainers.image.description="Open camera supervision kernel: Ray head, Ray worker and API image" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 heldar \
 && useradd --system --uid 10001 --gid heldar --home-dir /home/heldar --create-home --shell /bin/bash heldar \
 && mkdir -p /data/recordings \
 && chown -R heldar:heldar /data
COPY --from=build /opt/heldar /opt/heldar
# ffmpeg is the static build inside the imageio-ffmpeg wheel (HELDAR_FFMPEG unset picks it).
ENV PATH=/opt/heldar/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HELDAR_DATA_DIR=/data \
    HELDAR_API_HOST=0.0.0.0 \
    HELDAR_API_PORT=8000
USER 10001:10001
WORKDIR /home/heldar
VOLUME ["/data"]
EXPOSE 8000
# The API's liveness. Ray head/worker containers (KubeRay) override the command and use their own probes.
HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('HELDAR_API_PORT', '8000'), timeout=4)"]
CMD ["heldar", "serve"]

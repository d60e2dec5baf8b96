# syntax=docker/dockerfile:1
#
# One image for every healthwatch service; the command picks the service:
#   docker build -t healthwatch:local .
#   docker run --rm healthwatch:local                          # healthwatch --help
#   docker run --rm -p 8000:8000 -e HEALTHWATCH_... healthwatch:local healthwatch ingest
# docker-compose.yml wires the whole stack (Kafka, PostgreSQL, Prometheus); see deploy/README.md.
#
# Configuration is environment only (HEALTHWATCH_*, see shared/config.py); the image holds
# no .env file (.dockerignore keeps it out).

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: the package and its dependencies in a virtualenv ---------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# Dependencies first, in their own layer: it is rebuilt only when pyproject.toml changes.
# (README.md* because pyproject.toml names a readme; the glob copies it when it exists.)
COPY pyproject.toml README.md* ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

# The package itself: a regular (non-editable) install, which also brings the Alembic
# migrations (package data under shared/storage/migrations) into site-packages.
COPY services ./services
COPY shared ./shared
# The check runs from / so that it imports the installed copy, not the sources in /src.
RUN pip install . \
    && cd / \
    && healthwatch --help > /dev/null \
    && python -c "from shared.storage.db import MIGRATIONS_DIR as d; assert 'site-packages' in str(d) and (d / 'env.py').is_file() and any((d / 'versions').glob('0*.py')), d"

# --- runtime: the virtualenv only, run as a non-root user ------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="healthwatch" \
      org.opencontainers.image.description="Event-driven customer-health monitoring and early warning" \
      org.opencontainers.image.licenses="Apache-2.0"

# Pango for the reports' PDFs (WeasyPrint) and a font with Chinese glyphs for them.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 fonts-noto-cjk \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 healthwatch \
    && useradd --system --uid 10001 --gid healthwatch --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin healthwatch \
    && mkdir /app \
    && chown healthwatch:healthwatch /app

COPY --from=build /opt/venv /opt/venv

# HEALTHWATCH_HOST: inside a container the HTTP servers must listen on every interface
# (the default 127.0.0.1 is unreachable from outside the container).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HEALTHWATCH_HOST=0.0.0.0

# Writable by the app user: `healthwatch dev` keeps its SQLite file in the working dir.
WORKDIR /app
USER 10001:10001

# ingest API, scoring ops (/healthz /readyz /metrics), alerts ops, web (dashboard, APIs)
EXPOSE 8000 8001 8002 8003

# No HEALTHCHECK here: the same image runs services on different ports and one-shot
# commands (migrate, keys); docker-compose.yml gives each service its own healthcheck.
CMD ["healthwatch", "--help"]

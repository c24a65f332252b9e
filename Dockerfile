# syntax=docker/dockerfile:1
#
# Pushwire server image.
#   docker build -t pushwire .
#   docker run --rm -p 8000:8000 -e PUSHWIRE_SECRET_KEY=... pushwire
# The default command serves on 0.0.0.0:8000; `docker run pushwire database upgrade`
# runs the migrations (docker-compose.yml does that in its `migrate` service).

# --- console assets: htmx from the npm registry, pinned in package.json and package-lock.json --
FROM node:22-alpine AS assets
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --omit=dev

# --- Python build: install the project into a self-contained virtualenv --------------------
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# A compiler only in this stage, for any dependency without a wheel for this platform.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY . .
# setup.py builds migrations/, static/ and this pinned htmx into the package (no npm in this stage);
# the check (run outside /src, so it sees the installed package) fails the build without htmx.
COPY --from=assets /src/node_modules/htmx.org ./node_modules/htmx.org
RUN pip install --upgrade pip \
 && pip install . \
 && cd / && python -c "from pushwire.paths import require_htmx; require_htmx()"

# --- runtime ------------------------------------------------------------------------------
FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

RUN groupadd --system --gid 10001 pushwire \
 && useradd --system --uid 10001 --gid pushwire --home-dir /app --no-create-home --shell /usr/sbin/nologin pushwire

# The package carries its migrations and static assets: nothing of the source tree is needed.
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# Writable only here, for single-node SQLite: PUSHWIRE_DATABASE_URL=sqlite+aiosqlite:///data/pushwire.db
RUN mkdir -p /app/data && chown pushwire:pushwire /app/data

USER pushwire:pushwire
EXPOSE 8000
ENTRYPOINT ["pushwire"]
CMD ["run", "--host", "0.0.0.0", "--port", "8000"]

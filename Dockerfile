# Steward processes (migrate, ingest, worker, api) from one image; see docker-compose.yml.
# Two stages: the build stage installs the locked dependencies and Steward's wheel into a venv; the runtime
# stage copies only that venv (no pip cache, no sources, no build tools) and runs as an unprivileged user.
# No "# syntax=" line: that would pull the dockerfile frontend image, which air-gapped hosts cannot.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/steward
# Dependencies first (their own layer, rebuilt only when the lock changes), hash-checked, nothing unlocked.
COPY requirements.lock /tmp/requirements.lock
RUN /opt/steward/bin/pip install --require-hashes --no-deps -r /tmp/requirements.lock
# Then Steward itself as a wheel (not editable, not the source tree): pyproject's package discovery decides
# what ships; .dockerignore keeps tests, benchmarks and local venvs out of the context.
WORKDIR /src
COPY . .
RUN /opt/steward/bin/pip wheel --no-deps -w /tmp/dist . \
 && /opt/steward/bin/pip install --no-deps /tmp/dist/steward-*.whl \
 && /opt/steward/bin/pip check

FROM ${PYTHON_IMAGE}
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/steward steward
COPY --from=build /opt/steward /opt/steward
ENV PATH=/opt/steward/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 STEWARD_ENV=production \
    STEWARD_DATA_DIR=/home/steward/data
USER steward
WORKDIR /home/steward
ENTRYPOINT ["steward"]
CMD ["--help"]

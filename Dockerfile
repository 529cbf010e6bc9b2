# hub-collab's container image (docs/image.md). scripts/build-image builds it with podman:
#
#   scripts/build-image          # -> localhost/hub-collab:<version>
#
# The base images are made from Debian bookworm's packages by scripts/base-images; any
# other Debian bookworm image with the same packages will do (BUILD_BASE, RUNTIME_BASE).
# The build reads nothing but Debian's packages (in the base images), PyPI and the npm
# registry. A CA bundle the build should trust for PyPI and npm (a TLS-inspecting proxy)
# comes in as the build secret `cacerts` (podman/docker build --secret id=cacerts,src=FILE);
# it is never stored in a layer.
#
# Stages: frontend (npm ci + esbuild), requirements (from setup.cfg) -> wheels (the
# dependencies', then hub-collab's with the front end) -> venv (the dependencies, on the
# runtime base) -> app (hub-collab) -> the runtime image: Python 3.11, the venv, tini, a
# non-root user; no compiler, no Node.js, no npm, no pip.

ARG BUILD_BASE=localhost/hub-collab-build:bookworm
ARG RUNTIME_BASE=localhost/hub-collab-runtime:bookworm

# -- the front end: TypeScript -> hub_collab/static/dist ------------------------------------
FROM ${BUILD_BASE} AS frontend
WORKDIR /src/frontend
COPY frontend/package.json frontend/package-lock.json ./
# exactly the lock file's versions; --loglevel=error hides the engine warnings of the
# dev-only packages (jsdom and the linters, for the front end's tests) that want Node 20
RUN --mount=type=secret,id=cacerts \
    if [ -s /run/secrets/cacerts ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/cacerts; fi; \
    npm ci --no-audit --no-fund --loglevel=error
COPY frontend/ ./
RUN node build.mjs

# -- requirements: what hub-collab[postgres] needs, read from setup.cfg ----------------------
# (a file of its own, so that the dependencies' layers below stay cached while setup.cfg
# changes elsewhere: its pytest or mypy settings)
FROM ${BUILD_BASE} AS requirements
COPY setup.cfg /src/
RUN python3.11 -c "import configparser, sys; \
        c = configparser.ConfigParser(); c.read(sys.argv[1]); \
        print(c['options']['install_requires'].strip()); \
        print(c['options.extras_require']['postgres'].strip())" /src/setup.cfg >/requirements.txt

# -- wheels: every dependency's, then hub-collab's -----------------------------------------
FROM ${BUILD_BASE} AS wheels
RUN python3.11 -m venv /opt/build
ENV PATH=/opt/build/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
COPY --from=requirements /requirements.txt /deps/
RUN --mount=type=secret,id=cacerts \
    if [ -s /run/secrets/cacerts ]; then export PIP_CERT=/run/secrets/cacerts; fi; \
    set -e; \
    pip install --quiet 'setuptools>=68' wheel; \
    pip wheel --quiet --wheel-dir /wheels/deps --requirement /deps/requirements.txt; \
    pip download --quiet --no-deps --dest /wheels/pip pip
WORKDIR /src
COPY pyproject.toml setup.cfg README.md ./
COPY hub_collab/ hub_collab/
COPY --from=frontend /src/hub_collab/static/dist/ hub_collab/static/dist/
RUN pip wheel --quiet --no-deps --no-build-isolation --wheel-dir /wheels/app . \
    && python3.11 -m zipfile -l /wheels/app/hub_collab-*.whl | grep -q 'hub_collab/static/dist/app.js '

# -- the virtualenv with the dependencies, made by the runtime base's own Python ----------
FROM ${RUNTIME_BASE} AS venv
# pip runs from its wheel (python pip.whl/pip) and is not installed: the image has no pip
COPY --from=wheels /wheels/pip/ /wheels/pip/
COPY --from=wheels /wheels/deps/ /wheels/deps/
RUN set -e; \
    python3.11 -m venv --without-pip /opt/hub-collab; \
    pip=$(echo /wheels/pip/pip-*.whl)/pip; \
    /opt/hub-collab/bin/python "$pip" install --quiet --no-index --no-deps /wheels/deps/*.whl; \
    # casbin's wheel (1.43) carries a stray copy of npm's node-gyp and a release tool as
    # site-packages/node_modules, which nothing imports: no npm in the image
    rm -rf /opt/hub-collab/lib/python3.11/site-packages/node_modules

# -- hub-collab itself, installed into that venv under /app (its own layer below: ---------
# a change of hub-collab does not copy the dependencies again)
FROM venv AS app
COPY --from=wheels /wheels/app/ /wheels/app/
RUN set -e; \
    pip=$(echo /wheels/pip/pip-*.whl)/pip; \
    /opt/hub-collab/bin/python "$pip" install --quiet --no-index --no-deps --root /app /wheels/app/*.whl; \
    cp -a /app/. /; \
    /opt/hub-collab/bin/python "$pip" check; \
    /opt/hub-collab/bin/hub-collab --version

# -- the runtime image ----------------------------------------------------------------------
FROM ${RUNTIME_BASE}
ARG VERSION=unknown
ARG UID=1000
LABEL org.opencontainers.image.title="hub-collab" \
      org.opencontainers.image.description="Real-time collaborative notebooks for JupyterHub (a Hub service)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="BSD-3-Clause"
# a fixed uid and gid, so that Kubernetes' runAsNonRoot and fsGroup can rely on them; the
# data directory (database, cookie secret, kernels' working directories) is its home
RUN groupadd --gid "${UID}" hub-collab \
    && useradd --uid "${UID}" --gid "${UID}" --home-dir /srv/hub-collab --no-create-home \
       --shell /usr/sbin/nologin --comment "hub-collab service" hub-collab \
    && install -d -o "${UID}" -g "${UID}" -m 0700 /srv/hub-collab
COPY --from=venv /opt/hub-collab/ /opt/hub-collab/
COPY --from=app /app/opt/hub-collab/ /opt/hub-collab/
ENV PATH=/opt/hub-collab/bin:$PATH \
    HUB_COLLAB_DATA_DIR=/srv/hub-collab \
    PYTHONUNBUFFERED=1
WORKDIR /srv/hub-collab
USER ${UID}:${UID}
# the default port (--port, or the port of $JUPYTERHUB_SERVICE_URL)
EXPOSE 10101
# tini is PID 1: it passes SIGTERM on to hub-collab and reaps what kernels leave behind
ENTRYPOINT ["/usr/bin/tini", "--", "hub-collab"]
# a container's loopback is not reachable from outside it: listen on every address
CMD ["--ip=0.0.0.0"]

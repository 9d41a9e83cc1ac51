# hik2mqtt container: small, non-root, no secrets baked in (settings come from the environment).
# BASE: a Debian-based image with python3 (3.11 or newer) and its venv module. The project's
# checks build this file on a base made from Debian packages, without a registry
# (scripts/build-image). With podman/buildah, build with `--format docker`: the default OCI
# format has no HEALTHCHECK and drops it.
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY hik2mqtt ./hik2mqtt
RUN python3 -m venv /opt/hik2mqtt \
    && /opt/hik2mqtt/bin/pip install --no-cache-dir --disable-pip-version-check . \
    && find /opt/hik2mqtt -name __pycache__ -prune -exec rm -rf {} +

FROM ${BASE}
LABEL org.opencontainers.image.title="hik2mqtt" \
      org.opencontainers.image.description="Hikvision ANPR cameras to MQTT" \
      org.opencontainers.image.licenses="MIT"
COPY --from=build /opt/hik2mqtt /opt/hik2mqtt
# A numeric user and group (10001): volumes and `docker run --user` agree on the owner.
RUN groupadd --gid 10001 hik2mqtt \
    && useradd --uid 10001 --gid 10001 --home-dir /data --no-create-home hik2mqtt \
    && mkdir -p /data/pictures /data/spool /data/history && chown -R 10001:10001 /data
USER 10001:10001
WORKDIR /data
VOLUME ["/data/pictures", "/data/spool", "/data/history"]
# Reads waiting for the broker survive a restart of the container.
# MALLOC_ARENA_MAX: one malloc arena per thread is memory a bridge doesn't need.
ENV PATH=/opt/hik2mqtt/bin:$PATH \
    PYTHONUNBUFFERED=1 HIK2MQTT_SPOOL_DIR=/data/spool HIK2MQTT_HISTORY__DIR=/data/history MALLOC_ARENA_MAX=2 \
    HIK2MQTT_HEALTH_FILE=/tmp/hik2mqtt-health.json
# Healthy while the bridge is connected to the broker and to every camera (its real state,
# written every 5 s), not merely while the process exists.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["hik2mqtt", "health"]
ENTRYPOINT ["hik2mqtt"]
CMD ["run"]

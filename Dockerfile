# hik2mqtt container: small, non-root, no secrets baked in (settings come from the environment).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY hik2mqtt ./hik2mqtt
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
LABEL org.opencontainers.image.title="hik2mqtt" \
      org.opencontainers.image.description="Hikvision ANPR cameras to MQTT" \
      org.opencontainers.image.licenses="MIT"
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && useradd --system --uid 10001 --home-dir /data hik2mqtt \
    && mkdir -p /data/pictures /data/spool && chown -R hik2mqtt /data
USER hik2mqtt
WORKDIR /data
VOLUME ["/data/pictures", "/data/spool"]
# Reads waiting for the broker survive a restart of the container.
# MALLOC_ARENA_MAX: one malloc arena per thread is memory a bridge doesn't need.
ENV PYTHONUNBUFFERED=1 HIK2MQTT_SPOOL_DIR=/data/spool MALLOC_ARENA_MAX=2
ENV HIK2MQTT_HEALTH_FILE=/tmp/hik2mqtt-health.json
# Healthy while the bridge is connected to the broker and to every camera (its real state,
# written every 5 s), not merely while the process exists.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["hik2mqtt", "health"]
ENTRYPOINT ["hik2mqtt"]
CMD ["run"]

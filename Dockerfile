# pushgw image: every role (provider-api, connection-server, worker, migrate)
# runs from it; docker-compose.yml picks the role with `command`.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY gateway ./gateway
COPY provider_api ./provider_api
COPY connection_server ./connection_server
COPY feedback ./feedback
COPY loadtest ./loadtest
RUN pip install --no-cache-dir . && useradd --system --uid 10001 pushgw \
    && mkdir -p /var/lib/pushgw && chown pushgw /var/lib/pushgw
USER pushgw
# /var/lib/pushgw holds the APNs credentials vault (apns_keys.json): a volume shared by the
# provider API (admin uploads) and the workers (bridge).
ENV PUSHGW_HOST=0.0.0.0 PUSHGW_DATA_DIR=/var/lib/pushgw
EXPOSE 2197 8080 8765
# SIGTERM drains gracefully (docs/deploy.md, "Graceful restarts").
STOPSIGNAL SIGTERM
ENTRYPOINT ["pushgw"]
CMD ["serve"]

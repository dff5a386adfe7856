FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY gateway ./gateway
COPY provider_api ./provider_api
COPY connection_server ./connection_server
COPY feedback ./feedback
COPY loadtest ./loadtest
RUN pip install --no-cache-dir .
ENV PUSHGW_HOST=0.0.0.0
ENTRYPOINT ["pushgw"]
CMD ["serve"]

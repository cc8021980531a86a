# The zhizao image used by deploy/compose and deploy/k8s: every component, one entry point.
#   docker build -t zhizao:0.2.0 .
#   docker run --rm zhizao:0.2.0 --help          (zhizao ingest | agent | gateway | sim | ...)
# Pure-Python wheels only: builds the same on x86_64 and aarch64 (Raspberry Pi 4/5).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY zhizao ./zhizao
COPY simulator ./simulator
COPY edge_agent ./edge_agent
COPY gateway ./gateway
COPY ingest ./ingest
COPY analytics ./analytics
COPY dashboards ./dashboards
COPY bench ./bench
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/zhizao --create-home zhizao \
    && mkdir -p /etc/zhizao /secrets && chown zhizao /var/lib/zhizao /secrets
COPY --from=build /install /usr/local
USER zhizao
WORKDIR /var/lib/zhizao
ENV PYTHONUNBUFFERED=1
EXPOSE 8080 9108 4840
ENTRYPOINT ["zhizao"]
CMD ["--help"]

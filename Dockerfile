# One image for bot, worker, beat and the sandbox: `docker compose up` (see docker-compose.yml).
FROM python:3.11-slim-bookworm

# Prometheus only serves the sandbox profile; the product needs nothing from apt.
RUN apt-get update \
 && apt-get install -y --no-install-recommends prometheus \
 && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 meshops
WORKDIR /app
COPY pyproject.toml README.md ./
COPY meshops ./meshops
COPY bot ./bot
COPY workers ./workers
COPY workflows ./workflows
COPY sandbox ./sandbox
RUN pip install --no-cache-dir .

USER meshops
ENV PYTHONUNBUFFERED=1
# the bot's HTTP mode (Slack's requests, /livez, /readyz); a worker's /livez, /readyz, /metrics
EXPOSE 3000 9100
ENTRYPOINT ["meshops"]
CMD ["--help"]

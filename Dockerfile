# One image for bot, worker, beat and the sandbox: `docker compose up` (see docker-compose.yml).
FROM python:3.11-slim-bookworm

# tini is PID 1 (Docker's own `--init`; Kubernetes has none): it reaps what is orphaned to
# it, such as the chart interpreter of a worker pool process that was OOM-killed, and passes
# signals on to meshops. Prometheus only serves the sandbox profile.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini prometheus \
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
ENTRYPOINT ["/usr/bin/tini", "--", "meshops"]
CMD ["--help"]

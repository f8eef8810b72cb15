# amlbot: one image for `amlbot serve` (Slack), `amlbot work` and the maintenance commands.
FROM python:3.11-slim AS build
RUN python -m venv /opt/amlbot
ENV PATH=/opt/amlbot/bin:$PATH
WORKDIR /src
# Dependencies first, pinned by the lock (deploy/lock.py): a code change reuses this layer,
# and two builds of one commit install the same versions.
COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock
COPY pyproject.toml README.md ./
COPY bot bot
COPY commands commands
COPY approvals approvals
COPY workspaces workspaces
COPY shared shared
RUN pip install --no-cache-dir --no-deps . && python -m compileall -q /opt/amlbot

# The final image: the virtual environment alone, no pip cache, no build stage's sources.
FROM python:3.11-slim
RUN useradd --create-home --uid 10001 amlbot
COPY --from=build /opt/amlbot /opt/amlbot
ENV PATH=/opt/amlbot/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001
WORKDIR /home/amlbot
# Secrets (SLACK_*), AMLBOT_DATABASE_URL and AMLBOT_CONFIG come from the environment.
EXPOSE 3000 8080
# Alive on 3000 (`serve`, either mode) or 8080 (`work --health-port 8080`, as deployed).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s CMD ["python", "-c", "import sys, urllib.request\ndef up(port):\n    try:\n        return urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=2).status == 200\n    except OSError:\n        return False\nsys.exit(0 if up(3000) or up(8080) else 1)"]
ENTRYPOINT ["amlbot"]
CMD ["serve", "--http", "--port", "3000"]

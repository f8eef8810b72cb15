# amlbot: one image for `amlbot serve` (Slack) and the maintenance commands.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot bot
COPY commands commands
COPY approvals approvals
COPY workspaces workspaces
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 amlbot
COPY --from=build /install /usr/local
USER amlbot
WORKDIR /home/amlbot
# Secrets (SLACK_*), AMLBOT_DATABASE_URL and AMLBOT_CONFIG come from the environment.
ENV PYTHONUNBUFFERED=1
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:3000/healthz', timeout=2)" || exit 1
ENTRYPOINT ["amlbot"]
CMD ["serve", "--http", "--port", "3000"]

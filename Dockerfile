# Steward processes (ingest, worker, api) from one image; see docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY core protocol storage facility accounts tickets billing access alarms ingest worker api dashboards simulators steward examples ./
RUN pip install --no-cache-dir .
ENV STEWARD_ENV=production
ENTRYPOINT ["steward"]

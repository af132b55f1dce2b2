FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The pipeline resolves seeds/ relative to the working directory.
WORKDIR /app

COPY pyproject.toml constraints.txt README.md ./
COPY pipeline/ pipeline/
COPY connectors/ connectors/
COPY schemas/ schemas/
COPY seeds/ seeds/

# constraints.txt pins the Beam/pyarrow stack so image builds match CI.
# The dask extra also provides the `dask` CLI used by the compose dask profile.
RUN pip install --no-cache-dir -c constraints.txt '.[dask]'

# Pre-create /data owned by the runtime user: an empty named volume mounted
# there inherits this ownership, so the non-root user can write the lake.
RUN useradd --create-home --uid 10001 newsbeam \
    && mkdir -p /data \
    && chown newsbeam:newsbeam /data

USER newsbeam

ENTRYPOINT ["newsbeam"]
CMD ["run", "--output", "/data"]

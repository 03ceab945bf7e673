# OpenRooms: the library, the CLI and its workers, with every backend's extra.
#   docker build -t openrooms .
#   docker run --rm openrooms --help
# docker-compose.yml runs it on Postgres and Redis; docs/deploy.md explains the parts.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY openrooms ./openrooms
COPY openrooms_server ./openrooms_server
RUN pip install '.[all]'

# workflows, a runtime config and plugins are mounted or copied here
COPY examples ./examples
RUN useradd --create-home --uid 10001 openrooms
USER openrooms

ENTRYPOINT ["openrooms"]
CMD ["--help"]

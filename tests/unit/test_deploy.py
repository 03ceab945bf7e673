"""docker-compose.yml and the Dockerfile, checked without Docker (it is not on these machines):
every command the compose file gives a service is a real entry point taking the options it
passes, its environment resolves to the stores and queue the deployment means, and the
Dockerfile installs the package and starts the console script pyproject.toml declares."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from openrooms.cli import cli
from openrooms.config import worker_settings
from openrooms.urls import resolve_urls

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
OURS = sorted(name for name, spec in SERVICES.items() if spec.get("build") == ".")


def test_the_compose_file_runs_postgres_redis_the_migration_the_server_and_workers() -> None:
    assert {"postgres", "redis", "migrate", "worker", "server"} <= set(SERVICES)
    # the server listens on every address, so it must be given keys (no default key here)
    assert SERVICES["server"]["command"][:3] == ["serve", "--host", "0.0.0.0"]
    assert SERVICES["server"]["environment"]["OPENROOMS_API_KEYS"].startswith(
        "${OPENROOMS_API_KEYS:?"
    )
    assert SERVICES["server"]["depends_on"]["migrate"] == {
        "condition": "service_completed_successfully"
    }
    assert SERVICES["postgres"]["image"].startswith("postgres:")
    assert SERVICES["redis"]["image"].startswith("redis:")
    assert SERVICES["migrate"]["command"] == ["db", "upgrade"]
    assert SERVICES["worker"]["command"][0] == "worker"
    assert SERVICES["worker"]["deploy"]["replicas"] >= 2
    # workers start once the schema is migrated; the migration once the databases are up
    assert SERVICES["worker"]["depends_on"]["migrate"] == {
        "condition": "service_completed_successfully"
    }
    assert set(SERVICES["migrate"]["depends_on"]) == {"postgres", "redis"}
    # SIGTERM is the warm shutdown: the grace period must outlast a step
    assert SERVICES["worker"]["stop_signal"] == "SIGTERM"


@pytest.mark.parametrize("service", OURS)
def test_every_command_is_an_entry_point_with_the_options_it_passes(service: str) -> None:
    """``--help`` after the command's own arguments: click parses them all first, so an
    unknown command or option fails here as it would in the container."""
    command = SERVICES[service]["command"]
    assert isinstance(command, list) and all(isinstance(a, str) for a in command)
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: ")


@pytest.mark.parametrize("service", OURS)
def test_the_environment_puts_state_and_log_in_postgres_and_the_queue_in_redis(
    service: str,
) -> None:
    env = {k: str(v) for k, v in SERVICES[service]["environment"].items()}
    urls = resolve_urls(env)
    host = "postgres:5432/openrooms"
    assert urls.state.startswith("postgresql://") and host in urls.state
    assert urls.log == urls.state
    assert urls.queue is not None and urls.queue.startswith("redis://redis:6379")
    assert urls.sources == {"state": "DATABASE_URL", "log": "DATABASE_URL", "queue": "REDIS_URL"}
    # the worker settings it sets are read, and valid
    settings = worker_settings(None, env)
    assert settings.lease_ttl_s == float(env["OPENROOMS_LEASE_TTL_S"])
    assert settings.max_recoveries == int(env["OPENROOMS_MAX_RECOVERIES"])
    # a worker's warm shutdown gets longer than a lease to finish its step
    grace = SERVICES["worker"]["stop_grace_period"]
    assert int(grace.removesuffix("s")) > settings.lease_ttl_s


def test_the_postgres_service_matches_the_url_the_workers_use() -> None:
    pg = SERVICES["postgres"]["environment"]
    url = SERVICES["migrate"]["environment"]["DATABASE_URL"]
    assert url == (
        f"postgresql://{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@postgres:5432/"
        f"{pg['POSTGRES_DB']}"
    )


def test_the_dockerfile_installs_the_package_and_starts_its_console_script() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    # `openrooms` is the entry point; `openrooms-server` is `openrooms serve` under its own name
    assert set(project["scripts"]) == {"openrooms", "openrooms-server"}
    assert 'ENTRYPOINT ["openrooms"]' in dockerfile
    # what it copies exists, and includes every package the wheel ships
    copied = re.findall(r"^COPY (.+) \S+$", dockerfile, flags=re.MULTILINE)
    sources = [p for line in copied for p in line.split()]
    for source in sources:
        assert (ROOT / source).exists(), source
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"][
        "targets"
    ]["wheel"]["packages"]
    assert set(packages) <= set(sources)
    assert project["readme"] in sources
    # the extras it installs are the ones the compose file's backends need
    assert re.search(r"pip install '\.\[all\]'", dockerfile)
    assert {"redis", "postgres"} <= set(
        project["optional-dependencies"]["all"][0][10:-1].split(",")
    )
    assert "USER openrooms" in dockerfile  # not root

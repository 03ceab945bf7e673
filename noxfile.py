"""Sessions: ``nox -s lint tests`` is what CI runs; ``typecheck`` and ``docs`` too;
``screenshots`` retakes the dashboard's pictures in docs/img/;
``hostile`` runs the hostile-input generators with a large budget; ``chaos`` the fault
scenarios on Postgres, Redis and RQ workers, many trials each; ``api_fuzz`` schemathesis
against the API with a large budget."""

from __future__ import annotations

import os
import sys

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True

# Sessions with python=False run in the interpreter nox itself runs in, activated or not.
PY = (sys.executable, "-m")
PYTHONS = ["3.11", "3.12", "3.13"]
PACKAGES = ["openrooms", "openrooms_server", "tests", "bench", "examples", "docs", "noxfile.py"]


@nox.session(python=False)
def lint(session: nox.Session) -> None:
    """ruff format --check and ruff check."""
    session.run(*PY, "ruff", "format", "--check", *PACKAGES)
    session.run(*PY, "ruff", "check", *PACKAGES)


# Statement coverage of openrooms/ by the whole suite, rounded down: it may only go up.
COVERAGE_FLOOR = 94


@nox.session(python=False)
def typecheck(session: nox.Session) -> None:
    """mypy: strict on openrooms/, checked (not strict) on tests/."""
    session.run(*PY, "mypy")


@nox.session(python=False)
def tests(session: nox.Session) -> None:
    """The whole suite, in the current environment (``pip install -e '.[dev]'`` first), failing
    under the coverage floor; with arguments (``nox -s tests -- tests/unit``), just those."""
    if session.posargs:  # a part of the suite cannot be held to the whole suite's floor
        session.run(*PY, "pytest", *session.posargs)
        return
    session.run(
        *PY,
        "pytest",
        "--cov",
        "--cov-report=term:skip-covered",
        f"--cov-fail-under={COVERAGE_FLOOR}",
    )


@nox.session(python=PYTHONS)
def hermetic(session: nox.Session) -> None:
    """The suite in a fresh virtualenv per supported Python that is installed here."""
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs)


@nox.session(python=False)
def docs(session: nox.Session) -> None:
    """Regenerate docs/cli.md from the commands' --help and docs/api.md from /openapi.json."""
    session.run(sys.executable, "docs/gen_cli.py")
    session.run(sys.executable, "docs/gen_api.py")


@nox.session(python=False)
def screenshots(session: nox.Session) -> None:
    """Retake the dashboard's screenshots in docs/img/ (the README shows them) in Debian's
    headless Chromium (``apt-get install chromium``) against a server with example rooms."""
    session.run(sys.executable, "docs/screenshots.py", env={"PYTHONPATH": os.getcwd()})


@nox.session(python=False)
def hostile(session: nox.Session) -> None:
    """The hostile-input generators with a large budget (OPENROOMS_HOSTILE_EXAMPLES, 2000)."""
    examples = os.environ.get("OPENROOMS_HOSTILE_EXAMPLES", "2000")
    session.run(
        *PY,
        "pytest",
        "-p",
        "no:cacheprovider",
        "-o",
        "timeout=3600",
        "tests/property/test_hostile.py",
        *session.posargs,
        env={"OPENROOMS_HOSTILE_EXAMPLES": examples},
    )


@nox.session(python=False)
def chaos(session: nox.Session) -> None:
    """The fault scenarios of tests/e2e/test_faults.py, many trials each, on the Postgres and
    Redis the tests use (OPENROOMS_TEST_POSTGRES_URL / OPENROOMS_TEST_REDIS_URL): prints a
    table of trials, failures and recovery times. ``nox -s chaos -- --trials 20 -k SIGKILL``."""
    session.run(*PY, "tests.e2e.chaos", *session.posargs, env={"PYTHONPATH": os.getcwd()})


@nox.session(python=False)
def api_fuzz(session: nox.Session) -> None:
    """schemathesis against a running server's /openapi.json with a large budget
    (OPENROOMS_API_FUZZ_EXAMPLES per operation and mode, 300)."""
    examples = os.environ.get("OPENROOMS_API_FUZZ_EXAMPLES", "300")
    session.run(
        *PY,
        "pytest",
        "-p",
        "no:cacheprovider",
        "-o",
        "timeout=3600",
        "tests/server/test_api_fuzz.py",
        *session.posargs,
        env={"OPENROOMS_API_FUZZ_EXAMPLES": examples},
    )

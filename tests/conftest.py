"""Shared fixtures: the real examples in ../shared/data for contract tests, a Redis prefix of
the test run's own.

Contract tests (``@pytest.mark.contract``) check a contract against the real examples in
``../shared/data`` (ARM bodies, Slack payloads, AKS release notes). They run whenever that
folder is there and are skipped otherwise, all for one reason. ``MESHOPS_SHARED_DATA`` points
at the data folder elsewhere; an explicit path must be right (a folder with ``aks/`` and
``slack/`` in it): a wrong one stops the run with a usage error instead of skipping.
``MESHOPS_SHARED_DATA=`` (set, empty) runs the suite as on a machine without the folder.
Every other test is self-contained: the project's own fixtures are in ``tests/fixtures/``.

So that CI cannot lose the contract tests silently, a session in which the data is there and
contract tests were selected but every one of them was skipped fails.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
REDIS_URL = os.environ.get("MESHOPS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

SHARED_DATA_ENV = "MESHOPS_SHARED_DATA"
DEFAULT_SHARED_DATA = ROOT.parent / "shared" / "data"
SHARED_DATA_PARTS = ("aks", "slack")  # what the contract tests read
CONTRACT_SKIP = (f"contract test: needs the real examples in ../shared/data (set "
                 f"{SHARED_DATA_ENV} to point elsewhere)")


def locate_shared_data() -> Path | None:
    """The folder of the real examples, or None where there is none.

    Raises UsageError for an explicit ``MESHOPS_SHARED_DATA`` that is not that folder (or a
    ``../shared/data`` that is not), so that a wrong path fails loudly instead of skipping.
    """
    explicit = os.environ.get(SHARED_DATA_ENV)
    if explicit == "":
        return None
    path = Path(explicit).expanduser().resolve() if explicit else DEFAULT_SHARED_DATA
    if explicit is None and not path.exists():
        return None
    missing = [p + "/" for p in SHARED_DATA_PARTS if not (path / p).is_dir()]
    if missing:
        origin = f"{SHARED_DATA_ENV}={explicit}" if explicit else "../shared/data"
        why = f"it has no {', '.join(missing)}" if path.is_dir() else "it does not exist"
        raise pytest.UsageError(
            f"{origin}: {path} is not the folder of the real examples ({why}); point "
            f"{SHARED_DATA_ENV} at shared/data, or set it empty to run without the contract "
            "tests")
    return path


class ContractTests:
    """Skips contract tests where the data is missing; fails a session in which the data
    is there but every selected contract test was skipped."""

    name = "meshops-contract-tests"

    def __init__(self, data: Path | None) -> None:
        self.data = data
        self.ran = 0
        self.skipped = 0
        self.failure = ""

    def pytest_report_header(self) -> str:
        return f"contract tests: {self.data or 'skipped, no ../shared/data'}"

    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        if self.data is None and item.get_closest_marker("contract"):
            pytest.skip(CONTRACT_SKIP)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if "contract" not in report.keywords:
            return
        if report.skipped and not hasattr(report, "wasxfail"):
            self.skipped += 1
        elif report.when == "call":
            self.ran += 1

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.data is not None and self.skipped and not self.ran:
            self.failure = (f"all {self.skipped} contract tests selected were skipped although "
                            f"the real examples are in {self.data}: where the data is (CI), "
                            "they must run")
            if session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.failure:
            terminalreporter.section("contract tests", red=True, bold=True)
            terminalreporter.line(self.failure, red=True, bold=True)


#: the chaos suite's figures (tests/e2e/test_chaos.py), printed after the run: a test
#: records them as the user property ``chaos`` (which pytest-xdist carries from its worker
#: to the process that prints the summary)
CHAOS_REPORT: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for name, value in report.user_properties:
        if name == "chaos" and report.when == "call" and isinstance(value, list):
            CHAOS_REPORT.extend(str(line) for line in value)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if CHAOS_REPORT:
        terminalreporter.write_sep("-", "chaos suite")
        for line in CHAOS_REPORT:
            terminalreporter.write_line(line)


#: the chaos suite: a lane of its own beside the other end-to-end tests (below); that lane
#: then runs the rest, so the two lanes end about together (the campaign kill test stays
#: with the end-to-end tests: beside the chaos suite it made that lane the longer one)
CHAOS_TESTS = ("tests/e2e/test_chaos.py",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The end-to-end tests first, the chaos suite right after them, so that both lanes
    (below) start at once."""
    def lane(item: pytest.Item) -> int:
        if item.nodeid.startswith(CHAOS_TESTS):
            return 1
        return 0 if item.get_closest_marker("e2e") else 2
    items.sort(key=lane)  # stable: each lane keeps its order


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With ``--dist loadgroup`` (the suite's default, two workers): every test of tests/e2e
    but the chaos suite (:data:`CHAOS_TESTS`) in one scope, so one worker runs them one
    after the other, each with the machine's other core for its processes, while the other
    worker runs the chaos suite (which kills and restarts processes and waits, more than it
    computes) and then the
    rest. Two demos at once on two cores would stretch their timings past what they test.

    Why a scheduler of our own: pytest-xdist's ``xdist_group`` marker works by renaming
    ``item._nodeid``, which pytest 9.2 no longer reads, so the groups are lost."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]

    class Lanes(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            if nodeid.startswith(CHAOS_TESTS):
                return "chaos"
            return "e2e" if nodeid.startswith("tests/e2e/") else nodeid

    return Lanes(config, log)


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(ContractTests(locate_shared_data()), ContractTests.name)


@pytest.fixture(scope="session", autouse=True)
def _processes_temp_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The temporary directory of every process the tests start (``TMPDIR``): one of
    pytest's, which it rotates. A Celery pool process the tests kill (SIGKILL, as the
    chaos tests do) never removes its ``pymp-*`` directory; under /tmp those outlived the
    suite. This process keeps the temporary directory it already has."""
    own = tmp_path_factory.mktemp("processes")
    before = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(own)
    yield own
    if before is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = before


@pytest.fixture
def shared_data(request: pytest.FixtureRequest) -> Path:
    """The folder of the real examples (``../shared/data``), for contract tests only."""
    if not request.node.get_closest_marker("contract"):
        pytest.fail(f"{request.node.nodeid} reads ../shared/data: mark it "
                    "@pytest.mark.contract, or use the project's fixtures in tests/fixtures/")
    data: Path | None = request.config.pluginmanager.get_plugin(ContractTests.name).data
    if data is None:
        pytest.skip(CONTRACT_SKIP)
    return data


@pytest.fixture
def prefix() -> Iterator[str]:
    """A Redis key prefix of the test's own; whatever is left under it afterwards (a worker
    killed mid-run leaves its queue and runs) is deleted, and nothing else is."""
    import redis

    own = f"meshops-test-{secrets.token_hex(4)}"
    yield own
    try:
        r = redis.Redis.from_url(REDIS_URL)
        keys = list(r.scan_iter(own + ":*", count=1000))
        if keys:
            r.delete(*keys)
    except redis.RedisError:  # a test that stopped Redis: nothing to clean that we can reach
        pass


def send_json(handler: Any, body: Any, status: int = 200) -> None:
    """Answer an ``http.server`` request with ``body`` as JSON (test servers' answers)."""
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def eventually(cond: Any, timeout: float = 5.0) -> Any:
    """``cond()`` once it is truthy (polled every 10 ms), for work the bot does after its
    HTTP answer (``bot.deps.AfterAnswer``); AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value or time.monotonic() > deadline:
            assert value, f"not within {timeout}s"
            return value
        time.sleep(0.01)


def free_port_base(lo: int, hi: int, span: int = 1, step: int | None = None) -> int:
    """A random ``base`` in [lo, hi) such that ports base … base+span-1 can all be bound now
    on 127.0.0.1 (below the ephemeral range, so nothing the OS hands out collides later)."""
    step = step or span
    bases = list(range(lo, hi - span + 1, step))
    random.shuffle(bases)
    for base in bases:
        probes = []
        try:
            for port in range(base, base + span):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probes.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in probes:
                s.close()
    raise RuntimeError(f"no {span} free ports between {lo} and {hi}")


@contextmanager
def running(server: Any) -> Iterator[Any]:
    """A waitress ``server`` (``bot.http.make_server``) serving from a thread, as ``meshops
    bot`` serves; stopped from its own loop (:class:`bot.http.ServerThread`)."""
    from bot.http import ServerThread

    serving = ServerThread(server, "test-server")
    try:
        yield server
    finally:
        serving.close()

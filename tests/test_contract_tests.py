"""The contract-test machinery of tests/conftest.py, in pytest runs of its own: contract tests
skip with one reason where ../shared/data is missing, a wrong MESHOPS_SHARED_DATA stops the
run, and a session where the data is there but every contract test was skipped fails."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CONTRACT_SKIP, ROOT

TESTS = '''
import pytest

@pytest.mark.contract
def test_reads_the_data(shared_data):
    assert (shared_data / "aks").is_dir()

@pytest.mark.contract
def test_skips_itself():
    pytest.skip("a path that is wrong")

def test_self_contained():
    pass

def test_reads_the_data_unmarked(shared_data):
    pass
'''


@pytest.fixture
def run(tmp_path: Path):  # type: ignore[no-untyped-def]
    project = tmp_path / "project"
    (project / "tests").mkdir(parents=True)
    shutil.copy(ROOT / "tests" / "conftest.py", project / "tests" / "conftest.py")
    (project / "tests" / "test_it.py").write_text(TESTS)
    (project / "pytest.ini").write_text("[pytest]\naddopts = --strict-markers -ra\n"
                                        "markers =\n    contract: a contract test\n")

    def run(data: str, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "MESHOPS_SHARED_DATA": data}
        return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                               "tests", *args], cwd=project, env=env, capture_output=True,
                              text=True, timeout=120)
    return run


@pytest.fixture
def data(tmp_path: Path) -> str:
    for part in ("aks", "slack"):
        (tmp_path / "shared" / "data" / part).mkdir(parents=True)
    return str(tmp_path / "shared" / "data")


def test_contract_tests_run_where_the_data_is(run, data: str) -> None:
    out = run(data, "-k", "not unmarked")
    assert out.returncode == 0, out.stdout
    assert "2 passed, 1 skipped" in out.stdout  # the one that skips itself: not all


def test_every_contract_test_skipped_with_the_data_there_fails_the_session(run, data: str
                                                                           ) -> None:
    out = run(data, "-k", "skips_itself or self_contained")
    assert out.returncode == 1, out.stdout
    assert "1 passed, 1 skipped" in out.stdout
    assert f"all 1 contract tests selected were skipped although the real examples are in " \
           f"{Path(data).resolve()}" in out.stdout
    # no contract test selected: nothing to say
    assert run(data, "-k", "self_contained").returncode == 0


def test_without_the_data_contract_tests_are_skipped_for_one_reason(run) -> None:
    out = run("", "-k", "not unmarked")
    assert out.returncode == 0, out.stdout
    assert "1 passed, 2 skipped" in out.stdout
    assert re.search(r"SKIPPED \[2\] tests/conftest.py:\d+: " + re.escape(CONTRACT_SKIP),
                     out.stdout)  # one line: both for the same reason
    assert "all 2 contract tests" not in out.stdout


@pytest.mark.parametrize("where", ["/nonexistent/shared/data", "tmp"])
def test_a_wrong_explicit_path_stops_the_run(run, tmp_path: Path, where: str) -> None:
    path = str(tmp_path) if where == "tmp" else where  # tmp exists but is not the data
    out = run(path)
    assert out.returncode == pytest.ExitCode.USAGE_ERROR, out.stdout + out.stderr
    assert f"MESHOPS_SHARED_DATA={path}" in out.stderr
    why = "it has no aks/, slack/" if where == "tmp" else "it does not exist"
    assert f"is not the folder of the real examples ({why})" in out.stderr


def test_only_contract_tests_may_read_the_data(run, data: str) -> None:
    out = run(data, "-k", "unmarked")
    assert out.returncode == 1
    assert "reads ../shared/data: mark it @pytest.mark.contract" in out.stdout

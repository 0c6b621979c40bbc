"""The two test tiers (tests/conftest.py): a test not marked `slow` that starts a subprocess,
directly, through `run_cli`, by multiprocessing or in a fixture set up before, fails; a marked
one may. Checked on a small suite run by pytest with the project's conftest."""

from __future__ import annotations

import shutil

import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow  # pytest in a fresh process

SUITE = '''
import multiprocessing
import subprocess
import sys

import pytest


@pytest.fixture(scope="module")
def printed():
    return subprocess.run([sys.executable, "-c", "print(1)"], capture_output=True,
                          text=True, check=True).stdout


@pytest.mark.slow
def test_marked_may_start_a_subprocess():
    subprocess.run([sys.executable, "-c", "pass"], check=True)


def test_unmarked_may_not_start_a_subprocess():
    subprocess.run([sys.executable, "-c", "pass"], check=True)


def test_unmarked_may_not_call_run_cli():
    from conftest import run_cli

    run_cli(["--help"])


def test_unmarked_may_not_spawn_a_process():
    process = multiprocessing.get_context("spawn").Process(target=print)
    process.start()
    process.join()


@pytest.mark.slow
def test_marked_sets_the_fixture_up(printed):
    assert printed == "1\\n"


def test_unmarked_may_not_use_a_fixture_that_started_one(printed):
    assert printed


def test_unmarked_in_this_process_passes():
    assert sum(range(4)) == 6
'''


def run_suite(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    shutil.copy(ROOT / "tests" / "conftest.py", pytester.path / "conftest.py")
    shutil.copytree(ROOT / "tests" / "fakes", pytester.path / "fakes")
    pytester.makeini("[pytest]\nmarkers =\n    slow: the slow tier\naddopts = --strict-markers\n")
    pytester.makepyfile(test_suite=SUITE)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


def test_unmarked_tests_that_start_a_subprocess_fail(pytester: pytest.Pytester):
    result = run_suite(pytester, "-rfE")
    result.assert_outcomes(passed=3, failed=3, errors=1)
    for name, what in [("test_unmarked_may_not_start_a_subprocess", "-c pass"),
                       ("test_unmarked_may_not_call_run_cli", "run_cli: python run.py --help"),
                       ("test_unmarked_may_not_spawn_a_process", "multiprocessing"),
                       ("test_unmarked_may_not_use_a_fixture_that_started_one",
                        "in its fixture printed")]:
        result.stdout.fnmatch_lines([f"*test_suite.py::{name} starts a subprocess*{what}*"
                                     "but is not marked slow*"])


def test_the_fast_tier_refuses_a_fixture_it_would_set_up(pytester: pytest.Pytester):
    result = run_suite(pytester, "-m", "not slow", "-rfE")
    result.assert_outcomes(passed=1, failed=3, errors=1, deselected=2)
    result.stdout.fnmatch_lines(["*test_unmarked_may_not_use_a_fixture_that_started_one starts a "
                                 "subprocess*print(1)*but is not marked slow*"])

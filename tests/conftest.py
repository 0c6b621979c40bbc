"""Shared fixtures: small synthetic data, `python run.py` as a user runs it (a subprocess,
`run_cli`) or in this process (`run_in_process`), the one-error-line check, one shared train run.

Two tiers: `pytest -m "not slow"` (`make test-fast`) for the edit loop; `pytest` runs all.
A test that starts a subprocess (`python run.py`, `python -m ...`, `dvc`, `git`), runs real DVC
or Ray, or fits for more than a few seconds is marked `slow`; one that starts a subprocess
without the mark fails (`pytest_runtest_setup`/`_call` below), so no test dodges the tier."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import multiprocessing.util
import os
import runpy
import subprocess
import sys
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

# the `fake_numerai` fixture (Numerai on 127.0.0.1); `pytester` (test_tiers runs pytest)
pytest_plugins = ["fakes.numerai_server", "pytester"]

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"
RUN_PY = ROOT / "run.py"

# Small enough for seconds-long runs, large enough for a measurable signal.
SMALL_DATA = [
    "data.synthetic.n_train_eras=48",
    "data.synthetic.n_validation_eras=16",
    "data.synthetic.rows_per_era=150",
    "data.synthetic.n_features=24",
    "data.synthetic.n_live_rows=100",
]
FAST_GBDT = ["model.num_boost_round=40"]
# The shared train run (`trained_run`): LightGBM on the small data; recent_* keys over 5 eras.
TRAINED_RUN = [*SMALL_DATA, *FAST_GBDT, "scoring.recent_eras=5"]


# --- the slow tier: no subprocess without the mark ------------------------------------------

_UNMARKED: list[str] = []  # the node id of the unmarked test now running, if any
_SPAWNS = [0]  # subprocesses started so far
_SPAWNING_FIXTURES: set[tuple[str, str]] = set()  # (where, name) of fixtures that started one
_EXECUTE_CHILD = subprocess.Popen._execute_child
_SPAWNV_PASSFDS = multiprocessing.util.spawnv_passfds


def _refuse_subprocess(what: object) -> None:
    if _UNMARKED:
        pytest.fail(f"{_UNMARKED[0]} starts a subprocess ({what}) but is not marked slow: "
                    "add `@pytest.mark.slow` (or the module's `pytestmark = pytest.mark.slow`)",
                    pytrace=False)


def _counted_execute_child(self, args, *rest, **kwargs):
    """Every Popen (subprocess.run, check_output, ...) passes here."""
    _refuse_subprocess(args if isinstance(args, str | bytes) else " ".join(map(str, args)))
    _SPAWNS[0] += 1
    return _EXECUTE_CHILD(self, args, *rest, **kwargs)


def _counted_spawnv_passfds(path, args, passfds):
    """Every multiprocessing process started by spawn or forkserver passes here."""
    _refuse_subprocess(f"multiprocessing: {' '.join(map(str, args))}")
    _SPAWNS[0] += 1
    return _SPAWNV_PASSFDS(path, args, passfds)


def pytest_configure(config: pytest.Config) -> None:
    subprocess.Popen._execute_child = _counted_execute_child
    multiprocessing.util.spawnv_passfds = _counted_spawnv_passfds


def pytest_unconfigure(config: pytest.Config) -> None:
    subprocess.Popen._execute_child = _EXECUTE_CHILD
    multiprocessing.util.spawnv_passfds = _SPAWNV_PASSFDS


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef, request: pytest.FixtureRequest):
    spawned = _SPAWNS[0]
    try:
        return (yield)
    finally:
        if _SPAWNS[0] != spawned:
            _SPAWNING_FIXTURES.add((fixturedef.baseid, fixturedef.argname))


@contextlib.contextmanager
def _unless_slow(item: pytest.Item) -> Iterator[None]:
    if item.get_closest_marker("slow") is not None:
        yield
        return
    _UNMARKED.append(item.nodeid)
    try:
        yield
    finally:
        _UNMARKED.clear()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item):
    with _unless_slow(item):  # fixtures too: a module fixture may run `python run.py`
        result = yield
        # a fixture set up for an earlier test (its value cached here) that started one
        spawning = sorted(name for baseid, name in _SPAWNING_FIXTURES
                          if name in item.fixturenames and item.nodeid.startswith(baseid))
        if spawning:
            _refuse_subprocess(f"in its fixture {', '.join(spawning)}")
        return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    with _unless_slow(item):
        return (yield)


# --- data and runs --------------------------------------------------------------------------

@pytest.fixture(scope="session")
def small_data_dir(tmp_path_factory) -> Path:
    """Directory the small synthetic dataset lives in (generated on first use)."""
    return tmp_path_factory.mktemp("data") / "synthetic-small"


@pytest.fixture
def v5_copy(tmp_path, small_data_dir) -> Path:
    """A copy of the small synthetic data, in v5's layout, that a test may damage or cut."""
    import shutil

    from numerlab import data

    data.prepare(compose([*SMALL_DATA, f"data.dir={small_data_dir}"]).data)
    copy = tmp_path / "v5"
    shutil.copytree(small_data_dir, copy)
    return copy


def run_cli(args: list[str], cwd: Path = ROOT, env: dict | None = None, timeout: int = 300
            ) -> subprocess.CompletedProcess:
    """`python run.py *args` in a fresh process, as a user runs it (slow tests only)."""
    _refuse_subprocess(f"run_cli: python run.py {' '.join(args)}")
    full_env = {**os.environ, "HYDRA_FULL_ERROR": "0", "WANDB_SILENT": "true", **(env or {})}
    return subprocess.run([sys.executable, str(RUN_PY), *args], check=False, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=full_env)


def run_in_process(args: list[str], env: dict | None = None, cwd: Path | None = None
                   ) -> subprocess.CompletedProcess:
    """run.py as `python run.py *args` runs it (its `__main__`: Hydra's command line, numerlab's
    one-line errors), in this process: its exit status, stdout and stderr as run_cli gives
    them, without a Python start. An exception run.py lets out is a traceback and status 1,
    as in a process. `env` adds to this process's environment (None: unset the variable); the
    environment, cwd, logging and Hydra's globals are put back after."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    argv = [str(RUN_PY), *args]
    saved_env, saved_argv, saved_cwd = dict(os.environ), sys.argv, os.getcwd()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    saved_hydra_config = HydraConfig.instance().cfg
    out, err = io.StringIO(), io.StringIO()
    status = 0
    for key, value in {"HYDRA_FULL_ERROR": "0", "WANDB_SILENT": "true", **(env or {})}.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    sys.argv = argv
    try:
        if cwd is not None:
            os.chdir(cwd)
        with warnings.catch_warnings(), contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(err):
            try:
                runpy.run_path(str(RUN_PY), run_name="__main__")
            except SystemExit as exit_:
                if isinstance(exit_.code, str):
                    print(exit_.code, file=sys.stderr)
                status = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
            except Exception:
                traceback.print_exc()
                status = 1
    finally:
        os.chdir(saved_cwd)
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)
        for handler in root.handlers[:]:  # Hydra's job logging: the console and run.log
            if handler not in saved_handlers:
                root.removeHandler(handler)
                handler.close()
        for handler in saved_handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(saved_level)
        GlobalHydra.instance().clear()
        HydraConfig.instance().cfg = saved_hydra_config  # a later run_job: not this job's
    return subprocess.CompletedProcess(argv, status, out.getvalue(), err.getvalue())


def error_line(proc: subprocess.CompletedProcess, status: int = 2) -> str:
    """The run failed with `status` and exactly one `error: ...` line on stderr, no traceback;
    that line."""
    assert proc.returncode == status, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    return errors[0]


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def compose(overrides: list[str] | None = None):
    """Compose conf/ with Hydra's real compose API."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides or [])


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, small_data_dir) -> tuple[Path, subprocess.CompletedProcess]:
    """One finished `python run.py` train run (LightGBM, the small data) that every module
    needing one reads: (its run dir, the process). Read-only: a test that writes into a run
    dir copies it first."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    proc = run_cli([*TRAINED_RUN, f"data.dir={small_data_dir}", f"hydra.run.dir={run_dir}"])
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    return run_dir, proc

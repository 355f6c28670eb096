"""The wheel, as a user gets it: built, installed in a fresh virtual environment, used.

Everything else in the suite runs offload from the source tree; this is the
one test that would see a file the wheel leaves out (the brokers' SQL and
Lua), a dependency pyproject.toml forgets, or a console script that does not
start. It builds the wheel with pip (its build backend fetched like any
user's), or takes the one ``make dist`` built when ``OFFLOAD_TEST_WHEEL``
names it (CI), installs it with its ``redis`` and ``postgres`` extras from
the package index, the way the README says (``pip install
"offload-<version>-py3-none-any.whl[redis,postgres]"``), and runs a task on
SQLite, Redis and PostgreSQL through a real ``offload worker`` process of
that environment. Select it alone with ``-m wheel``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest

from helpers import stop
from servers import scratch_url

pytestmark = [pytest.mark.wheel, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
WAIT = 60.0  # seconds for a step that fetches from the package index

# The scripts that live as files beside the brokers' code (STYLE.md: scripts
# are files), which a wheel only carries if the build is told to.
SCRIPTS = {
    "_sqlite": "*.sql",
    "_postgres": "*.sql",
    "_redis": "*.lua",
}

JOBS = """\
import os

import offload

app = offload.App(os.environ["WHEEL_TEST_URL"], name="wheel")


@app.task
def add(a: int, b: int) -> int:
    return a + b
"""

PRODUCER = """\
import offload
import jobs

assert "site-packages" in offload.__file__, offload.__file__  # the wheel, not the source tree
handle = jobs.add(2, 40)
print("result", handle.result(timeout=float({wait})))
print("state", jobs.app.job(handle.id).state)
"""


def _run(
    *command: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT * 2,
        check=False,  # the assertion below shows what the command said
    )
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done


def _clean_env(**extra: str) -> dict[str, str]:
    """This process's environment minus what would lead to the source tree or an outer venv."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "OFFLOAD_URL")
    }
    return {**env, **extra}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("OFFLOAD_TEST_WHEEL")
    if given:  # the wheel `make dist` built (CI): test the very file a release ships
        return Path(given).resolve()
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", out, ROOT)
    (built,) = out.glob("offload-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the wheel installed; its bin folder."""
    home = tmp_path_factory.mktemp("venv")
    # No pip inside: this process's pip installs into it (pip --python), which
    # spares the seconds of bootstrapping a second pip.
    venv.create(home, with_pip=False, symlinks=os.name != "nt")
    bin_dir = home / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / "python"
    # The README's install line for a wheel, with both server extras.
    _run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "--quiet",
        f"{wheel}[redis,postgres]",
    )
    return bin_dir


def test_the_wheel_carries_the_brokers_scripts(wheel: Path) -> None:
    version = (ROOT / "src/offload/__init__.py").read_text(encoding="utf-8")
    assert f'__version__ = "{wheel.name.split("-")[1]}"' in version, f"{wheel.name} is stale"
    with zipfile.ZipFile(wheel) as archive:
        names = [PurePosixPath(name) for name in archive.namelist()]
    assert PurePosixPath("offload/py.typed") in names, "type checkers need the py.typed marker"
    for broker, pattern in SCRIPTS.items():
        folder = PurePosixPath("offload/_brokers") / broker
        found = [name for name in names if folder in name.parents and name.match(pattern)]
        assert found, f"the wheel has no {pattern} under {folder}/: {sorted(map(str, names))}"


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def broker_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each broker's URL, in a file, namespace or schema of the test's own."""
    with scratch_url(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def worker(
    installed: Path, tmp_path: Path, broker_url: str
) -> Iterator[tuple[Path, dict[str, str]]]:
    """A real ``offload worker`` of the installed environment, serving ``broker_url``."""
    (tmp_path / "jobs.py").write_text(JOBS)
    env = _clean_env(WHEEL_TEST_URL=broker_url)
    process = subprocess.Popen(
        [str(installed / "offload"), "worker", "jobs:app", "--concurrency", "2"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        yield tmp_path, env
    finally:
        output = stop(process, WAIT)
        assert process.returncode == 0, f"the worker ended with {process.returncode}:\n{output}"


def test_a_task_runs_end_to_end_from_the_installed_wheel(
    installed: Path, worker: tuple[Path, dict[str, str]]
) -> None:
    folder, env = worker
    script = folder / "produce.py"
    script.write_text(textwrap.dedent(PRODUCER.format(wait=WAIT)))
    done = _run(installed / "python", script, cwd=folder, env=env)
    assert done.stdout.split("\n")[:2] == ["result 42", "state succeeded"], done.stderr

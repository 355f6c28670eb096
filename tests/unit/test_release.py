"""What a release carries: a version the changelog names, and install lines that work.

offload is not on the package index yet, so every install command the
README and the error messages give must work without it: a clone, a built
wheel, a git URL, or the missing extra's own packages.
"""

from __future__ import annotations

import re
import sys
from datetime import date
from pathlib import Path

import pytest

import offload
from offload._install import extra_requirements, install_command

ROOT = Path(__file__).resolve().parents[2]
RELEASE = re.compile(r"^## \[(?P<version>[^\]]+)\](?: - (?P<date>\S+))?\s*$", re.MULTILINE)


def _releases() -> list[tuple[str, str | None]]:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    return [(found["version"], found["date"]) for found in RELEASE.finditer(text)]


def _key(version: str) -> tuple[int, ...]:
    parts = [int(part) for part in version.split(".")]
    while len(parts) > 1 and parts[-1] == 0:  # 5.0 is 5.0.0
        parts.pop()
    return tuple(parts)


def test_the_version_is_the_changelogs_newest_release() -> None:
    releases = _releases()
    assert releases, "CHANGELOG.md has no '## [version] - date' headings"
    assert releases[0] == ("Unreleased", None), "the first section is '## [Unreleased]'"
    newest, _ = releases[1]
    assert offload.__version__ == newest, (
        f"offload.__version__ is {offload.__version__} but CHANGELOG.md's newest release is "
        f"{newest}: add a '## [{offload.__version__}] - YYYY-MM-DD' section (or fix the version)"
    )


def test_the_changelogs_releases_are_dated_and_newest_first() -> None:
    released = _releases()[1:]
    for version, day in released:
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{version!r} is not X.Y.Z"
        assert day is not None, f"## [{version}] needs its date: ## [{version}] - YYYY-MM-DD"
        date.fromisoformat(day)  # raises on a malformed date
    versions = [_key(version) for version, _ in released]
    assert versions == sorted(versions, reverse=True), "releases go newest first"
    days = [day for _, day in released]
    assert days == sorted(days, reverse=True), "release dates go newest first"


def test_the_license_is_the_one_pyproject_declares() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^license = "MIT"$', pyproject, re.MULTILINE)
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")


def test_every_install_line_of_the_readme_works_without_the_package_index() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "not on the package index" in readme
    wheels = set(re.findall(r"offload-([0-9][^-]*)-py3-none-any\.whl", readme))
    assert wheels <= {offload.__version__}, f"the README names wheels of {wheels}"
    lines = [line for line in readme.splitlines() if "pip install" in line]
    assert lines, "the README says how to install offload"
    for line in lines:
        for target in re.findall(r'"(offload\[[^"]*)"', line):
            # "offload[redis]" alone asks the index; "offload[redis] @ <url>" does not.
            assert " @ " in target, f"{line.strip()!r} installs offload from the package index"


def test_a_missing_extra_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # `import redis` raises ImportError
    with pytest.raises(offload.ConfigurationError) as caught:
        offload.App("redis://127.0.0.1:6379/0")
    message = str(caught.value)
    assert "not on the package index" in message
    assert re.search(r'"redis[<>=,.0-9]+"', message), message  # the extra's own packages
    assert 'pip install "offload[redis]"' not in message
    assert '"offload[redis] @ git+' in message


def test_the_extras_requirements_come_from_the_metadata() -> None:
    assert any(requirement.startswith("redis") for requirement in extra_requirements("redis"))
    assert any(requirement.startswith("psycopg") for requirement in extra_requirements("postgres"))
    assert "[postgres]" in install_command("postgres")


def test_the_oldest_pins_are_pyprojects_lower_bounds() -> None:
    """`make test-oldest` tests the versions pyproject.toml claims to support, no newer."""
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    bounds = {
        name.lower().replace("_", "-"): version
        for name, version in re.findall(r'"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?>=([0-9.]+)', pyproject)
    }
    pins = dict(
        line.split("==")
        for line in (ROOT / ".ci/oldest.txt").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    )
    pins = {name.lower().replace("_", "-"): version for name, version in pins.items()}
    assert pins.pop("psycopg-binary") == pins["psycopg"], "psycopg[binary] comes with its twin"
    for name, version in pins.items():
        assert name in bounds, f".ci/oldest.txt pins {name}, which pyproject.toml does not require"
        assert _key(bounds[name]) == _key(version), (
            f"pyproject.toml asks {name}>={bounds[name]}, .ci/oldest.txt tests {version}"
        )
    for name in ("redis", "hiredis", "psycopg", "click", "tqdm"):
        assert name in pins, f"the oldest {name} pyproject.toml allows is not tested"

"""How to install offload and its extras, for the messages that have to say so.

offload is not published on the package index yet, so ``pip install
"offload[redis]"`` finds nothing (or, worse, someone else's package of that
name). Every message that tells a user what to install says it here, once:
the extra's own packages (what is missing, exactly as this offload's
metadata asks for them), or offload itself from a clone, a built wheel or a
git URL.
"""

from __future__ import annotations

import re

UNPUBLISHED = "offload is not on the package index (PyPI) yet"

# Used when the metadata cannot be read (offload run from a source tree
# without being installed): the bounds of pyproject.toml's extras, by hand.
_FALLBACK = {
    "redis": ["redis>=5.0", "hiredis>=3.0"],
    "postgres": ["psycopg[binary]>=3.2.1"],
}

_EXTRA_MARKER = re.compile(r"""\s*;\s*extra\s*==\s*["']([^"']+)["']\s*$""")


def extra_requirements(extra: str) -> list[str]:
    """The requirements ``offload[extra]`` adds, as this installed offload declares them."""
    # Imported here, on the way to an error message only: importlib.metadata (and
    # the email parser it brings) would be a tenth of `import offload`'s time.
    import importlib.metadata

    try:
        declared = importlib.metadata.requires("offload") or []
    except importlib.metadata.PackageNotFoundError:
        declared = []
    found = []
    for requirement in declared:
        marker = _EXTRA_MARKER.search(requirement)
        if marker is not None and marker.group(1) == extra:
            found.append(requirement[: marker.start()].strip())
    return found or list(_FALLBACK.get(extra, []))


def install_command(extra: str | None = None) -> str:
    """The ways to install offload (with ``extra``) that work today, in one sentence."""
    name = f"offload[{extra}]" if extra else "offload"
    suffix = f"[{extra}]" if extra else ""
    return (
        f"{UNPUBLISHED}: install it from its repository, "
        f'pip install "{name} @ git+<repository URL>", from a clone, '
        f'pip install "/path/to/offload{suffix}", or from a built wheel, '
        f'pip install "/path/to/offload-<version>-py3-none-any.whl{suffix}"'
    )


def missing_extra(broker: str, module: str, extra: str) -> str:
    """What to do when a broker's client library (offload's ``extra``) is not installed."""
    packages = " ".join(f'"{requirement}"' for requirement in extra_requirements(extra))
    return (
        f"the {broker} broker needs the {module} package, which offload's {extra!r} extra "
        f"installs: pip install {packages} into this environment; or reinstall offload "
        f"with the extra ({install_command(extra)})"
    )


def upgrade_hint() -> str:
    """How to get a newer offload, for a store written by one."""
    return (
        "Upgrade offload in this environment to the version that wrote it "
        f"({UNPUBLISHED}: pip install --upgrade from an updated clone, wheel or git URL)."
    )

"""What an app declares: the only code its workers run, the only classes its data names.

A broker's contents are data, never code. A message names a task; a worker
runs it only if its app declared it: a task registered with ``@app.task`` or
``@offload.task``, or, for ``app.enqueue(fn)``, a plain function defined in
a module the app includes (``App(include=["myproject.jobs"])``; the module
of a registered task counts as included). The same rule decides which
classes a payload's dataclass and enum tags may name. Nothing is imported
because stored data names it: only the modules the configuration lists.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Iterable
from typing import Any

from ._errors import ConfigurationError, TaskNotAllowed
from ._runner import TaskSpec
from ._task import make_spec

_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")
_QUALNAME = _MODULE  # the same shape: identifiers joined by dots


class Declared:
    """An app's declarations: its task registry and the modules it includes."""

    def __init__(self, registry: dict[str, TaskSpec], include: Iterable[str] = ()) -> None:
        self.registry = registry
        self.include = frozenset(_check_module(name) for name in include)
        self._modules: frozenset[str] = self.include
        self._counted = -1

    def modules(self) -> frozenset[str]:
        """Modules whose functions and classes stored data may name."""
        if len(self.registry) != self._counted:  # a task was declared since
            specs = list(self.registry.values())
            self._modules = self.include | frozenset(
                _module_of(spec) for spec in specs if ":" not in spec.name
            )  # a plain function enqueued with app.enqueue() does not include its module
            self._counted = len(specs)
        return self._modules

    def allows_module(self, module: str) -> bool:
        """Whether stored data may name functions and classes of ``module``."""
        return module in self.modules()

    def check_function(self, fn: Any, name: str) -> None:
        """Refuse, at the call, ``app.enqueue(fn)`` of a function no worker would run."""
        module = name.partition(":")[0]
        if not self.allows_module(module):
            raise TaskNotAllowed(
                f"app.enqueue({name}): a worker runs plain functions only from the modules "
                f"its app includes, and {module!r} is not one. Add it: "
                f"App(..., include=[{module!r}]) (or OFFLOAD_INCLUDE={module} for the default "
                "app), or declare the function with @app.task"
            )

    def resolve(self, name: str) -> TaskSpec | None:
        """The declared task called ``name``; None if there is none.

        Raises ``TaskNotAllowed`` for a plain function (``module:qualname``)
        outside the included modules: nothing is imported for it.
        """
        spec = self.registry.get(name)
        if spec is not None:
            return spec
        if ":" in name:
            return self._plain_function(name)
        # A decorated task (``module.qualname``) of an included module that
        # this process has not imported yet: importing it runs its decorators.
        module = name.rpartition(".")[0]
        while module:
            if module in self.include:
                importlib.import_module(module)
                return self.registry.get(name)
            module = module.rpartition(".")[0]
        return None

    def _plain_function(self, name: str) -> TaskSpec | None:
        module, _, qualname = name.partition(":")
        if not (_MODULE.match(module) and _QUALNAME.match(qualname)):
            raise TaskNotAllowed(
                f"the task name {name[:200]!r} is not a module:function name; nothing was run"
            )
        if not self.allows_module(module):
            raise TaskNotAllowed(
                f"the job names {name}, a function of module {module!r}, which this app does "
                f"not include: nothing was imported or run. If it is yours, add the module: "
                f"App(..., include=[{module!r}]) (or OFFLOAD_INCLUDE={module}), or declare "
                "the function with @app.task"
            )
        found: Any = importlib.import_module(module)  # a module the configuration names
        for part in qualname.split("."):
            found = getattr(found, part, None)
        fn = getattr(found, "__offload_fn__", found)
        # Defined in that module under that name: never a function it merely
        # imported (``jobs:os.system``), a class, or any other callable object.
        if not (inspect.isfunction(fn) and fn.__module__ == module and fn.__qualname__ == qualname):
            raise TaskNotAllowed(
                f"the job names {name}, which is not a function defined in {module!r}; "
                "only functions defined at the top level of an included module run: "
                "nothing was run"
            )
        spec = make_spec(fn, name=name)
        self.registry[name] = spec
        return spec


def _module_of(spec: TaskSpec) -> str:
    return (spec.import_path or "").partition(":")[0] or getattr(spec.fn, "__module__", "")


def _check_module(name: object) -> str:
    if not isinstance(name, str) or not _MODULE.match(name):
        raise ConfigurationError(
            f"include= takes module names such as 'myproject.jobs', not {name!r}"
        )
    return name

"""Model families by name.

Each family lives in its own package with a ``suite.py`` defining a
:class:`core.suite.ModelSuite` subclass. ``--model`` also accepts ``package.module:Class``
for a family kept outside this repository (a plug-in).
"""
from __future__ import annotations

import importlib
import importlib.util

from core.errors import UserError
from core.suite import ModelSuite

FAMILIES = {
    "nrflv": "nrflv.suite:NRFLVSuite",
    "cordsnet": "cordsnet.suite:CordsNetSuite",
    "snn_dales": "snn_dales.suite:SNNDalesSuite",
    "dsn": "dsn.suite:DSNSuite",
    "rsa": "rsa.suite:RSASuite",
}


def _import(target: str) -> type[ModelSuite]:
    module_name, _, cls_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise UserError(f"--model: cannot import {module_name!r} ({exc})") from None
        raise
    cls = getattr(module, cls_name, None)
    if not (isinstance(cls, type) and issubclass(cls, ModelSuite)):
        raise UserError(f"--model: {target!r} is not a ModelSuite subclass")
    return cls


def get_suite(name: str) -> type[ModelSuite]:
    """The suite class of a family name (or of a ``module:Class`` plug-in path)."""
    if name in FAMILIES:
        target = FAMILIES[name]
        module_name = target.partition(":")[0]
        if importlib.util.find_spec(module_name) is None:
            raise UserError(f"--model: the {name} family is not available in this version yet "
                            f"(no {module_name.replace('.', '/')}.py); available: {', '.join(available())}")
        return _import(target)
    if ":" in name:
        return _import(name)
    raise UserError(f"--model: unknown model {name!r}; choose one of {', '.join(FAMILIES)} "
                    "or give a plug-in as package.module:SuiteClass")


def available() -> list[str]:
    """Families whose package ships a suite in this version."""
    import importlib.util as u

    return [n for n, t in FAMILIES.items() if u.find_spec(t.partition(":")[0]) is not None]

"""circuitcheck: check interpretability circuit claims like code.

    from circuitcheck import check
    results = check("hypotheses/max_of_list.hyp.yaml")   # one Result per claim

The pytest plugin (`pytest hypotheses/`) is a thin layer over the same functions.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from typing import TYPE_CHECKING

# Each public name and the module it lives in, imported when first used: importing the package (as
# pytest does for the plugin) loads nothing else, so the plugin decides how the rest is imported.
_PUBLIC = {
    "check": "session", "load_model": "session", "Options": "session", "Session": "session",
    "load": "files.loader", "HypothesisError": "files.loader",
    "register_model": "language.registry", "register_measure": "language.registry",
    "Run": "measures.base",
    "allow_paths": "files.paths",
}
__all__ = list(_PUBLIC)

if TYPE_CHECKING:
    from .files.loader import HypothesisError, load
    from .files.paths import allow_paths
    from .measures.base import Run
    from .language.registry import register_measure, register_model
    from .session import Options, Session, check, load_model


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'circuitcheck' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *__all__])


# Modules of the flat layout before 0.2 and where they live now. `import circuitcheck.stats` (or
# `from circuitcheck.paths import allow`) still works for one release: it gives a stand-in module
# that reads every name from the new one, and warns once with the path to write instead.
MOVED = {
    "names": "language.names", "fields": "language.fields", "registry": "language.registry",
    "jsonl": "prompts.jsonl", "text_prompts": "prompts.text", "where": "prompts.where",
    "model_files": "models.model_files", "hub": "models.hub", "placement": "models.placement",
    "override": "models.override", "fingerprint": "models.fingerprint",
    "attribution": "measures.attribution", "keysets": "measures.keysets", "weights": "measures.weights",
    "yaml_lines": "files.yaml_lines", "paths": "files.paths", "conftests": "files.conftests", "spec": "files.spec",
    "hypothesis_file": "files.loader", "roles": "files.roles",
    "plan": "runs.plan", "cache": "runs.cache",
    "stats": "judge.stats", "verdict": "judge.verdict", "correlation": "judge.correlation",
    "specificity": "judge.specificity",
    "report_json": "report.json_report", "report_html": "report.html_report", "dump": "report.dump",
    "baseline": "report.baseline", "regression": "report.regression", "series": "report.series",
}


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        old = fullname.removeprefix(__name__ + ".")
        return importlib.util.spec_from_loader(fullname, self) if old in MOVED and old != fullname else None

    def exec_module(self, module):
        old = module.__name__.removeprefix(__name__ + ".")
        new = f"{__name__}.{MOVED[old]}"
        warnings.warn(f"{module.__name__} moved to {new} in circuitcheck 0.2; import it from there "
                      "(the old path goes in the next release)", DeprecationWarning, stacklevel=2)
        real = importlib.import_module(new)
        module.__getattr__ = lambda name: getattr(real, name)
        module.__dir__ = lambda: dir(real)
        module.__doc__ = real.__doc__


if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
    sys.meta_path.append(_MovedFinder())

"""Names that moved: a package that was one module before 0.2 still answers for that module's names,
for one release, with a warning that names the path to write instead (CHANGELOG.md)."""
from __future__ import annotations

import importlib
import warnings


def forward(package: str, module: str):
    """A module `__getattr__` for `package` that reads the names of its submodule `module`."""
    def __getattr__(name: str):
        real = importlib.import_module(f"{package}.{module}")
        if name.startswith("__") or not hasattr(real, name):
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        warnings.warn(f"{package}.{name} moved to {package}.{module}.{name} in 0.2; import it from there",
                      DeprecationWarning, stacklevel=2)
        return getattr(real, name)

    return __getattr__

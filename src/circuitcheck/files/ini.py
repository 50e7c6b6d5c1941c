"""`cc_*` keys in pytest's ini files: the `--cc-*` flags written once for a project.

`--cc-device` is `cc_device` in `pytest.ini` (`[pytest]`), `pyproject.toml`
(`[tool.pytest.ini_options]`), `tox.ini` (`[pytest]`) or `setup.cfg` (`[tool:pytest]`), found as
pytest finds them. A flag given on the command line wins over its key. Under pytest, pytest reads the
file (`config.getini`); `circuitcheck check` finds and reads the same file here. Either way a value is
checked as the flag's own text would be, and a bad one is a usage error naming the file and key.
"""
from __future__ import annotations

import argparse
import configparser
from pathlib import Path

# (file name, the section that holds pytest's keys); pytest.ini counts even without its section.
INI_FILES = (("pytest.ini", "pytest"), (".pytest.ini", "pytest"), ("pyproject.toml", None), ("tox.ini", "pytest"),
             ("setup.cfg", "tool:pytest"))


class IniError(ValueError):
    """A `cc_*` key whose value the flag would refuse."""


def key_of(flag: str) -> str:
    """`--cc-device` -> `cc_device` (the flag's option name too)."""
    return flag.removeprefix("--").replace("-", "_")


def ini_type(spec: dict) -> str:
    """The pytest ini type of a flag with add_option keywords `spec`."""
    action = spec.get("action")
    return "bool" if action == "store_true" else "linelist" if action == "append" else "string"


def value(flag: str, spec: dict, raw, where: str):
    """The flag's value from its key's raw value (a string, a bool, a list of lines), checked by the
    flag's own type and choices; IniError saying where and why."""
    key = f"{where}: {key_of(flag)} = {raw!r}"
    if spec.get("action") == "store_true":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            raise IniError(f"{key}: write true or false")
        return text in ("true", "1", "yes", "on")
    if spec.get("action") == "append":
        return [line.strip() for line in (raw.splitlines() if isinstance(raw, str) else raw) if str(line).strip()]
    text = str(raw).strip()
    try:
        out = spec.get("type", str)(text)
    except (argparse.ArgumentTypeError, ValueError) as exc:
        raise IniError(f"{key}: {exc}") from None
    if spec.get("choices") and out not in spec["choices"]:
        raise IniError(f"{key}: choose one of {', '.join(map(str, spec['choices']))}")
    return out


def given_on_command_line(flag: str, argv) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in argv)


def find(start: Path) -> tuple[Path | None, dict]:
    """(the ini file pytest would read for a run started at `start`, its keys), looking upwards;
    (None, {}) when there is none."""
    for folder in [start, *start.parents]:
        for name, section in INI_FILES:
            path = folder / name
            if path.is_file():
                keys = _read(path, section)
                if keys is not None:
                    return path, keys
    return None, {}


def _read(path: Path, section: str | None) -> dict | None:
    """The pytest keys of `path`, or None when it holds no pytest section (pytest looks further up)."""
    if section is None:
        import tomllib

        try:
            tool = tomllib.loads(path.read_text(encoding="utf-8")).get("tool", {})
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise IniError(f"{path}: not valid TOML ({exc})") from None
        pytest_table = tool.get("pytest") if isinstance(tool, dict) else None
        if not isinstance(pytest_table, dict):
            return None
        return pytest_table.get("ini_options", pytest_table)
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise IniError(f"{path}: cannot be read ({exc})") from None
    if not parser.has_section(section):
        return {} if path.name in ("pytest.ini", ".pytest.ini") else None
    return dict(parser.items(section))


def apply(specs, namespace, argv, keys: dict, where: str) -> None:
    """Set each flag of `specs` ((flag, add_option keywords)) that `argv` does not give and `keys` has."""
    for flag, spec in specs:
        raw = keys.get(key_of(flag))
        if raw is None or given_on_command_line(flag, argv) or not hasattr(namespace, key_of(flag)):
            continue
        setattr(namespace, key_of(flag), value(flag, spec, raw, where))

"""Files: a hypothesis file read into a validated spec, every error at its file, line and field.

- `yaml_lines.py`  YAML read safely into maps, lists and scalars that remember their line
- `paths.py`       files a hypothesis file names: inside its folder tree, regular, checked first
- `spec.py`        the schema of what a researcher may write (and the JSON Schema built from it)
- `loader.py`      a file → its claims and cases, prompts built, heads and hooks checked
- `roles.py`       heads named by what they do (`roles:`), bound by a scan when claims run
- `conftests.py`   conftest.py files loaded the way pytest loads them, for `circuitcheck check`
"""

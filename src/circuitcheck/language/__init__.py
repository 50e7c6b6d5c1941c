"""The language hypothesis files are written in, shared by every stage below the files:

- `names.py`     heads, neurons and hooks by name (`L1H2`, `L0N5`, `blocks.1.attn.hook_z`)
- `fields.py`    the pydantic building blocks of every part of a file (heads, positions, numbers)
- `registry.py`  the registered Python a file may name (`python:` measures, `factory:` models)
- `moved.py`     old import paths that still answer for one release, with a warning

Plain Python and pydantic, no torch and no other stage: collection validates with them.
"""

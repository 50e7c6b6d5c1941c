"""Keep pytest out of benchmarks/: its hypothesis files and scripts are measured by hand
(`python benchmarks/NAME.py`), never collected as tests."""
collect_ignore_glob = ["*"]

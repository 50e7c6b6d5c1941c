"""Root conftest: keep the deliberately broken hypothesis files of the test corpus out of
`pytest hypotheses/` and `pytest tests/` collection; tests load them explicitly."""
collect_ignore_glob = ["tests/bad/*", "tests/twins/*"]

"""The pipeline's settings wherever a test runs it and its quality is not under test: 2 label windows (the tiny sample
would plan 16) and a search of 3 fits (2 settings on half the buyers, the better on all). tests/test_selection.py
plans the windows on the tiny sample; bench/quality.py measures the defaults."""

CHEAP = {"label_windows": 2, "search_fits": 3}  # PipelineConfig's fields


def cli_args(settings: dict) -> tuple[str, ...]:
    """`hmrec pipeline`'s options for PipelineConfig's fields."""
    return tuple(arg for name, value in settings.items() for arg in (f"--{name.replace('_', '-')}", str(value)))


CHEAP_ARGS = cli_args(CHEAP)
# the shared run (conftest.pipeline_run): one window more, behind the settings' week (the path the default plan takes)
SHARED_RUN_ARGS = cli_args(CHEAP | {"label_windows": 3})

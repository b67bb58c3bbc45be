"""The pipeline's settings wherever a test runs it and its quality is not under test: 2 label windows (the tiny sample
would plan 10) and a search of 3 fits (2 settings on half the buyers, the better on all). tests/test_selection.py
plans the windows on the tiny sample; bench/quality.py measures the defaults."""

CHEAP = {"label_windows": 2, "search_fits": 3}  # PipelineConfig's fields
CHEAP_ARGS = tuple(arg for name, value in CHEAP.items() for arg in (f"--{name.replace('_', '-')}", str(value)))

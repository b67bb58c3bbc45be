"""The offline stages' malloc settings: a large array freed and allocated again is reused, not faulted in anew."""

from __future__ import annotations

import json
import os
import subprocess
import sys

# Allocate, touch, free and allocate 64 MB again in a fresh process; print the page faults of the second time.
# numpy's huge-page advice is off, so a fresh mapping faults once per 4 kB page on any kernel.
FAULTS = """
import json, resource, sys
if sys.argv[1] == "kept":
    from hmrec.allocator import keep_freed_memory
    assert keep_freed_memory()
import numpy as np
np.ones(8 << 20)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
np.ones(8 << 20)
print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before))
"""


def _faults(mode: str) -> int:
    env = {**os.environ, "NUMPY_MADVISE_HUGEPAGE": "0"}
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, "-c", FAULTS, mode], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def test_freed_memory_is_reused_not_faulted_in_again():
    pages = (64 << 20) // 4096
    assert _faults("default") > pages // 2  # glibc's default: the second array is a new mapping
    assert _faults("kept") < pages // 10

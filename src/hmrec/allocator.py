"""glibc's malloc kept from handing every large block back to the kernel, in the offline stages.

By default glibc serves a block over 32 MB with its own mmap and unmaps it when it is freed, so the next array of
that size is new memory, zeroed by the kernel page by page. The batch stages allocate and free arrays of tens of
MB for every block of customers: the full-size pipeline took 41 million page faults, 254 s of system time beside
1,688 s of user time. Kept in the heap instead, the memory is reused: scoring the held-out week's 103,370
customers at full size took 6-7 s of system time instead of 14-17 s, and 0.3-0.6 GB more at its peak.

Serving does not call this: its workers keep what they allocate once, and its answers are small.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

# mallopt's options and glibc's variables for them (read when a process starts: the processes this one spawns)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
KEPT = {
    "MALLOC_MMAP_THRESHOLD_": (M_MMAP_THRESHOLD, 1 << 30),  # blocks under 1 GB come from the heap
    "MALLOC_TRIM_THRESHOLD_": (M_TRIM_THRESHOLD, 2**31 - 1),  # freed memory at the heap's top is kept, up to 2 GB
    "MALLOC_TOP_PAD_": (M_TOP_PAD, 256 << 20),  # the heap grows 256 MB at a time
}


def keep_freed_memory() -> bool:
    """This process's malloc settings (mallopt) and, through the environment, those of every process it starts.
    Variables the user set are kept. False (and nothing changed) where the C library is not glibc."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    for name, (option, value) in KEPT.items():
        os.environ.setdefault(name, str(value))
        try:
            wanted = int(os.environ[name])
        except ValueError:
            log.warning("%s=%r is not a number of bytes: glibc's default is kept", name, os.environ[name])
            continue
        mallopt(option, ctypes.c_int(min(wanted, 2**31 - 1)))
    return True

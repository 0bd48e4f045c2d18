"""Child processes that do not outlive their parent: Linux's PR_SET_PDEATHSIG."""

import ctypes
import functools
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def dies_with_parent(sig: int = signal.SIGTERM, parent: int | None = None) -> None:
    """In a child process (about to exec, or a fork that runs on): have the kernel send it `sig`
    when its parent dies, however the parent dies (a SIGKILL included). When the parent is gone
    already (`parent`, its pid, no longer the parent's), the child exits now. The signal comes when
    the thread that started the child ends: for a parent that starts children from one thread.
    Nothing on other systems than Linux."""
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if parent is not None and os.getppid() != parent:
        os._exit(1)


#: For subprocess.Popen(preexec_fn=...): stopped (SIGTERM) when its parent dies.
stops_with_parent = dies_with_parent
#: ... or killed outright.
killed_with_parent = functools.partial(dies_with_parent, signal.SIGKILL)

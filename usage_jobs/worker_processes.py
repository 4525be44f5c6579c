"""Worker processes (days staged, files folded, periods rendered): started by one forkserver per process, with every module a
worker runs imported once, in the server.

Not fork: the command runs threads (Dagster, DuckDB), and forking a process that runs threads can deadlock the child. The
server is a process-wide singleton whose preload is fixed when it starts: each pool naming only its own module left the others'
workers importing theirs after the fork. `start()` starts it ahead of the pools: it imports those modules (~0.4 s) while the
command ingests, instead of when the site's first period is due.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from multiprocessing import forkserver
from multiprocessing.context import BaseContext

PRELOAD = ["usage_jobs.defs.gateway.ingest", "usage_jobs.defs.gateway.fold", "usage_jobs.defs.report.warm_templates"]


def context() -> BaseContext:
    """The multiprocessing context every pool of the product uses, its server running."""
    start()
    return multiprocessing.get_context("forkserver")


def start() -> None:
    """Start the forkserver now, if it does not run yet; returns at once (the server imports the modules on its own).

    The signal mask is kept: starting multiprocessing's resource tracker unblocks SIGINT in the calling thread, and the command
    blocks it there so that Ctrl-C reaches it alone, not Dagster's log-tail helpers it starts later (run_guard). Every pool
    starts it through here, so none unblocks it, whichever comes first.

    The server is a `python -c` whose preload imports see the working directory first (Python 3.11 ignores the sys.path it is
    handed there): from a folder holding another checkout of the package, the workers ran that code. PYTHONSAFEPATH keeps the
    directory out of its path."""
    multiprocessing.get_context("forkserver").set_forkserver_preload(PRELOAD)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    safe_path = os.environ.get("PYTHONSAFEPATH")
    os.environ["PYTHONSAFEPATH"] = "1"
    try:
        forkserver.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if safe_path is None:
            del os.environ["PYTHONSAFEPATH"]
        else:
            os.environ["PYTHONSAFEPATH"] = safe_path

"""A service's startup objects kept out of Python's full garbage collections.

A service makes most of its Python objects as it starts (modules, the project's
descriptors and compiled SQL, gRPC's and aiohttp's machinery) and keeps them for its
whole life. CPython's full (generation 2) collection walks every tracked object each time
it runs, and walks these slowly: 0.3-0.7 µs an object in Pipit's processes, against about
0.1 for a plain list of lists. In the query service at 10 M events (about 124,000
objects) one took 55-88 ms, about once a minute at one client's pace and more often under
load, and every call in flight waits that long (measured 2026-12-02 with a `gc.callbacks`
probe; the gateway's took 37-48). Frozen once the service is up (`gc.freeze`), they are
left out of every later collection: one forced mid-run took 0.24-0.31 ms, against 71-87
unfrozen.

A frozen object is still freed when nothing refers to it any more; only garbage in a
reference cycle among them stays (the project a deploy replaces, once), and they live as
long as the process anyway. Tests that start the services in their own process do not
freeze it: only the `pipit` command's processes do (pipit/cli.py)."""

from __future__ import annotations

import atexit
import gc

import structlog

log = structlog.get_logger("pipit")


def freeze_startup_objects(service: str) -> int:
    """Moves every object the start made into the collector's permanent generation, and
    logs how many (`startup_objects_frozen`); returns that number. Once the service
    serves, not before: what is made until then is kept for good."""
    # The start's own garbage goes first, rather than being frozen with the rest.
    gc.collect()
    gc.freeze()
    # Back among the others before the interpreter tears down: extension modules' objects
    # left frozen then are finalized out of order, and the process crashes on its way out
    # (SIGSEGV after a clean stop, seen with `pipit up`).
    atexit.register(gc.unfreeze)
    frozen = gc.get_freeze_count()
    log.info("startup_objects_frozen", service=service, objects=frozen)
    return frozen

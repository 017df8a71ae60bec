"""The process entry point of every service: uvicorn's command line, with the process's garbage
collector tuned first. `python -m services.common.serve --factory services.journey.app:create_app
--port 8001` takes every uvicorn option.

Process-wide settings belong to the process, not to the library code an app is built from: a bulk
call of 10,000 items keeps a few hundred thousand objects alive until it answers, and CPython's
default thresholds (700, 10, 10) then walk the whole heap several times per call (measured in
docs/engineering-notes.md). The objects alive at start-up are frozen out of every collection and the
older generations are collected less often; cycles are still collected.
"""

from __future__ import annotations

import gc

import uvicorn


def main() -> None:
    gc.freeze()
    gc.set_threshold(10_000, 50, 100)
    uvicorn.main()


if __name__ == "__main__":
    main()

"""Imported last by each of the local Ray's pre-started workers: says the worker is warm.

Ray imports ``search.ray_runtime.WORKER_PRELOAD`` in each idle worker it starts, in order, before
the worker accepts work; this module comes last, resumes the garbage collector worker_start
paused, and leaves a file named after the worker's PID in the folder named by
PARAMAUDIT_WORKER_READY_DIR. The driver waits for those files before a search
(search.ray_runtime.wait_for_warm_workers): Ray Tune gives a trial the first actor that is ready
and stops the ones still starting, so a search begun while the workers import would lose their
warm-up.
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

READY_DIR_ENV = "PARAMAUDIT_WORKER_READY_DIR"

if "paramaudit.worker_start" in sys.modules and not gc.isenabled():
    # the pause worker_start began: the imports are done, and stay for the worker's life
    gc.freeze()
    gc.enable()

_folder = os.environ.get(READY_DIR_ENV)
if _folder and Path(_folder).is_dir():
    (Path(_folder) / str(os.getpid())).touch()

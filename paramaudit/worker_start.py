"""Imported first by each of the local Ray's pre-started workers: pauses the garbage collector.

Ray imports ``search.ray_runtime.WORKER_PRELOAD`` in each idle worker it starts, in order; this
module comes first, so the imports after it (torch, torch._dynamo, Ray Tune: about 4 CPU-s a
worker) run without the cyclic collector walking their objects again and again (about a tenth of
that time, measured). ``worker_ready``, imported last, freezes what the imports built and resumes it.
"""

from __future__ import annotations

import gc

gc.disable()

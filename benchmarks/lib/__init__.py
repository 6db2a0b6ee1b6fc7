"""Shared code of the benchmark scripts (``benchmarks/train_step.py``, ``benchmarks/inference.py``).

* :mod:`benchmarks.lib.methods` -- method -> option file, the ``tiny`` / ``paper`` presets, the
  derived scratch baseline, stand-in weights, building the model.
* :mod:`benchmarks.lib.timing` -- device clocks, peak memory, the machine's measured peak FLOP/s.
* :mod:`benchmarks.lib.instrument` -- per-step time breakdown (providers, networks, phases),
  network-call recording and bare replay of the essential parts, FLOP counting.
* :mod:`benchmarks.lib.report` -- the JSON result files and ``benchmarks/RESULTS.md``.
"""

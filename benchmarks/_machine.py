"""One short description of the machine a benchmark ran on, for its JSON line and docs/results.md.

``machine()`` -> ``"AMD EPYC 7B13, 2 of 2 cpus, load 3.1 2.8 2.5"``; with a CUDA device the GPU's name is
added. The benchmarks are run as scripts (``python benchmarks/x.py``), so they import it as ``_machine``.
"""

from __future__ import annotations

import os
import platform


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as fh:
            return next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def machine(device: object = None) -> str:
    """CPU model, usable of all cpus, the GPU if ``device`` is a CUDA device (str or torch.device), load average.

    Usable cpus are this process's affinity (``taskset``), which is what the benchmark actually gets; the
    load average says how much of them other jobs on a shared machine took.
    """
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    text = f"{cpu_model()}, {usable} of {os.cpu_count()} cpus"
    if device is not None and str(device).startswith("cuda"):
        import torch  # lazily: most benchmarks never touch a GPU, and torch costs seconds to import

        text += f", {torch.cuda.get_device_name(device)}"
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{text}, load {load}"


if __name__ == "__main__":  # `make bench` runs every benchmarks/*.py: this one heads its output with the machine
    print(machine())

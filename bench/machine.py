"""One line naming the machine a bench ran on, printed above every table."""

from __future__ import annotations

import os
import platform
import subprocess


def describe() -> str:
    """CPU model, cores, memory and the GPU (from nvidia-smi; importing torch next to llama.cpp's CUDA build aborts)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    memory = ""
    try:
        memory = f", {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB"
    except (ValueError, OSError):
        pass
    gpu = ""
    try:
        names = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                               text=True, timeout=20).stdout.split("\n")
        if names[0].strip():
            gpu = f", GPU {names[0].strip()}"
    except (OSError, subprocess.SubprocessError):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"machine: {cpu}, {os.cpu_count()} cores{memory}{gpu}; load average {load:.1f} at start"

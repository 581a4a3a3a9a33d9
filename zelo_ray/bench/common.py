"""Small helpers shared by the benchmarks: peak memory, machine description, free ports."""

from __future__ import annotations

import os
import platform
import resource
import socket



def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, Python {platform.python_version()}"


def peak_rss_of(cmdline_substring: str) -> dict[int, float]:
    """Peak resident memory (VmHWM, MiB) of live processes whose command line contains the
    substring, e.g. Ray actors ``ray::MapWorker(MapBatches(DocEmbedder))`` (Linux /proc)."""
    out = {}
    for pid_dir in os.listdir("/proc"):
        if not pid_dir.isdigit():
            continue
        try:
            with open(f"/proc/{pid_dir}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
            if cmdline_substring not in cmd:
                continue
            with open(f"/proc/{pid_dir}/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        out[int(pid_dir)] = int(line.split()[1]) / 1024.0
        except OSError:
            continue
    return out


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (for local servers in tests and benchmarks)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]

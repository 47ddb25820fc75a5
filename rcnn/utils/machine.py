"""What this machine offers a run: usable CPU cores and available memory."""
import os

__all__ = ['usable_cores', 'available_memory']


def usable_cores():
    """Cores this process may run on (its CPU affinity; ``os.cpu_count()`` where unknown)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def available_memory():
    """Bytes of ``MemAvailable`` in /proc/meminfo (Linux), or None where unknown."""
    try:
        with open('/proc/meminfo') as meminfo:
            for line in meminfo:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None

"""Small timing helpers shared by the benchmark scripts.

Every benchmark module exposes ``run(quick=False) -> list[dict]``; each row is a
``measure()`` result plus a ``name``. ``bench/run_all.py`` collects them.
"""
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get('RETINAFACE_SHARED', ROOT.parent / 'shared'))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def measure(name, fn, repeat=20, warmup=2, unit='ms', **extra):
    """Time ``fn()`` ``repeat`` times after ``warmup`` calls.

    Returns a row: name, median, p10/p90 spread, min, repeat count (times in ms),
    plus any ``extra`` fields (e.g. images per call).
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000.0)
    times = np.asarray(times)
    row = {'name': name, 'median_ms': float(np.median(times)),
           'p10_ms': float(np.percentile(times, 10)), 'p90_ms': float(np.percentile(times, 90)),
           'min_ms': float(times.min()), 'repeat': int(repeat)}
    row.update(extra)
    return row


def print_rows(rows):
    """Print rows as an aligned table."""
    for row in rows:
        extras = ' '.join('%s=%s' % (k, v) for k, v in row.items()
                          if k not in ('name', 'median_ms', 'p10_ms', 'p90_ms', 'min_ms', 'repeat'))
        if 'median_ms' in row:
            print('%-55s median %9.3f ms  [p10 %9.3f, p90 %9.3f]  n=%d %s' % (
                row['name'], row['median_ms'], row['p10_ms'], row['p90_ms'], row['repeat'], extras))
        else:
            print('%-55s %s' % (row['name'], extras))

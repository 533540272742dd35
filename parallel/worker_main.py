"""A worker process of parallel/pool.py's WorkerPool: ``python worker_main.py RANK WORLD PORT DEVICE TIMEOUT
[PATH ...]`` (PATHs join ``sys.path``, for jobs defined outside the pack)."""
from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    import standalone

    sys.path.remove(str(root))
    standalone.load_pack()
    sys.path.extend(sys.argv[6:])
    from poseanimate.parallel.pool import serve

    serve(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], float(sys.argv[5]))

"""``benchmarks/bench_stores.py --quick`` runs on the session's servers and prints its table (no timing assertions)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_stores_quick_prints_its_table(postgres_url: str, redis_url: str, redis_cluster_url: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_stores.py"), "--quick", "--postgres", postgres_url,
         "--redis", redis_url, "--redis-cluster", redis_cluster_url],
        capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "16 concurrent clients" in lines[0]
    rows = {line[:16].strip(): line[16:].split() for line in lines[2:6]}
    assert list(rows) == ["SQLite", "PostgreSQL", "Redis", "Redis Cluster"]
    assert rows["SQLite"][1] == rows["SQLite"][3] == "1.00x"  # ratios to the peer measured in the same run
    assert rows["Redis"][0] == "n/a" and rows["Redis Cluster"][0] == "n/a"  # no users in Redis
    assert all(float(rows[b][-2]) > 0 for b in rows)  # every backend verified tokens

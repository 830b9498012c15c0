"""`make bench`: every benchmark in turn, then one Markdown summary of all results."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = [
    "bench_pipeline.py",
    "bench_reindex.py",
    "bench_indexers.py",
    "bench_models.py",
    "bench_video.py",
    "bench_api.py",
    "bench_explain.py",
    "bench_pca.py",
    "bench_page.py",
]


def main() -> int:
    failed = []
    for script in SCRIPTS:
        print(f"== {script}", flush=True)
        if subprocess.run([sys.executable, str(HERE / script)], cwd=HERE).returncode:
            failed.append(script)
    parts = [
        p.read_text() for p in sorted((HERE / "results").glob("*.md")) if p.name != "README.md"
    ]
    (HERE / "results" / "README.md").write_text("# Benchmark results\n\n" + "\n".join(parts))
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Release watcher benchmark: parsing a whole changelog, and a poll that finds
nothing new (one conditional request answered 304, no parsing), each timed over repeated
runs and printed per run.

    .venv/bin/python benchmarks/releases.py [--changelog PATH] [--runs 20]

``--changelog`` defaults to the sandbox's own release history (``sandbox/data/CHANGELOG.md``);
point it at the real AKS CHANGELOG.md for a larger file.
"""

from __future__ import annotations

import argparse
import random
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sandbox.app import Sandbox  # noqa: E402
from workers.github.feed import ReleaseFeed  # noqa: E402
from workflows.releases import parse  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changelog", type=Path,
                        default=ROOT / "sandbox/data/CHANGELOG.md")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    text = args.changelog.read_text()

    parse_s = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        events = parse(text)
        parse_s.append(time.perf_counter() - t0)

    sb = Sandbox(Path(tempfile.mkdtemp(prefix="meshops-relbench-")),
                 random.randrange(16000, 20000, 10), with_prometheus=False,
                 changelog=args.changelog)
    sb.start()
    r = redis.Redis(decode_responses=True)
    prefix = f"meshops-relbench-{secrets.token_hex(4)}"
    try:
        feed = ReleaseFeed(r, prefix, sb.url["control"] + "/_sandbox/github/repos/Azure/AKS/"
                           "releases", None)
        t0 = time.perf_counter()
        first = feed.poll()
        first_s = time.perf_counter() - t0
        poll_s = []
        for _ in range(args.runs):
            before = feed.requests
            t0 = time.perf_counter()
            assert feed.poll() == []
            poll_s.append(time.perf_counter() - t0)
            assert feed.requests == before + 1
    finally:
        sb.stop()
        keys = list(r.scan_iter(prefix + "*"))
        if keys:
            r.delete(*keys)
    lines = text.count("\n")
    print(f"release watcher benchmark ({args.runs} runs each)")
    print(f"  parse {args.changelog.name}: {lines} lines, {len(events)} events: "
          f"median {statistics.median(parse_s) * 1e3:.1f} ms, max {max(parse_s) * 1e3:.1f} ms")
    print(f"  first poll (200, {len(sb.releases)} releases parsed): {first_s * 1e3:.1f} ms, "
          f"{len(first)} events")
    print(f"  poll with nothing new (one conditional request, 304, no parsing): median "
          f"{statistics.median(poll_s) * 1e3:.2f} ms, max {max(poll_s) * 1e3:.2f} ms — "
          f"{statistics.median(poll_s) / first_s:.3f} × the first poll")


if __name__ == "__main__":
    main()

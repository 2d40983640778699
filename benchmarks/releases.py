"""Release watcher benchmark: meshops' conditional poll against a plain full poll of the
same feed, interval by interval.

Both sides poll the sandbox's GitHub releases feed (``GET /repos/Azure/AKS/releases``) the
same number of times:

- **meshops**: :class:`workers.github.feed.ReleaseFeed.poll` — its validators read from
  Redis, ``If-None-Match`` / ``If-Modified-Since`` sent, a 304 parses nothing; a 200 is
  parsed and its validators stored;
- **plain**: what a poller without validators does — GET the whole feed every interval and
  parse it (the same parser, ``parse_releases_json``).

Each interval both sides poll once, the side that goes first alternating; a new release is
published every ``--new-release-every`` intervals (before both polls), so both sides see it
in the same interval and meshops pays for a full download then. Both sides are warmed first
(meshops' warm-up is its first download, which stores the ETag). Bytes are those received:
status line, headers and body of each answer.

Prints per side the time (total and p50 per poll, ms), the bytes, the calls, and last::

    releases: time ratio T, bytes ratio B (meshops conditional vs plain full poll, N intervals)

    .venv/bin/python benchmarks/releases.py [--changelog PATH] [--intervals 400]
        [--new-release-every 50] [--quick]

``--changelog`` defaults to the sandbox's own release history (``sandbox/data/CHANGELOG.md``,
a few KB); point it at the real AKS CHANGELOG.md for a feed of the real releases' size.
"""

from __future__ import annotations

import argparse
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sandbox.app import Sandbox  # noqa: E402
from workers.github.feed import ReleaseFeed  # noqa: E402
from workflows.releases import parse_releases_json  # noqa: E402

FEED_PATH = "/_sandbox/github/repos/Azure/AKS/releases"
HEADERS = {"Accept": "application/vnd.github+json", "User-Agent": "meshops-release-watcher"}


def received_bytes(resp: requests.Response) -> int:
    """Bytes of an answer as received: status line, headers and body (HTTP/1.1)."""
    head = len(f"HTTP/1.1 {resp.status_code} {resp.reason}\r\n") + 2
    head += sum(len(k) + len(v) + 4 for k, v in resp.raw.headers.items())
    return head + len(resp.content)


@dataclass
class Side:
    """One poller: ``poll()`` returns whether it parsed a feed (a 200)."""

    name: str
    session: requests.Session
    poll: Callable[[], bool]
    seconds: list[float] = field(default_factory=list)
    bytes: int = 0
    calls: int = 0
    parsed: int = 0

    def __post_init__(self) -> None:
        def count(resp: requests.Response, *args: Any, **kwargs: Any) -> None:
            self.calls += 1
            self.bytes += received_bytes(resp)

        self.session.hooks["response"].append(count)

    def timed(self) -> None:
        t0 = time.perf_counter()
        changed = self.poll()
        self.seconds.append(time.perf_counter() - t0)
        self.parsed += changed

    def reset(self) -> None:
        self.seconds, self.bytes, self.calls, self.parsed = [], 0, 0, 0


def meshops_side(r: redis.Redis, prefix: str, url: str) -> Side:
    feed = ReleaseFeed(r, prefix, url, None, session=requests.Session())
    return Side("meshops", feed.http, lambda: bool(feed.poll()))


def plain_side(url: str) -> Side:
    session = requests.Session()

    def poll() -> bool:
        resp = session.get(url, headers=HEADERS, timeout=15)
        resp.raise_for_status()
        return bool(parse_releases_json(resp.json()))

    return Side("plain", session, poll)


def publish(control: str, n: int) -> None:
    """A new release note on the sandbox's feed (a patch of asm-1-25)."""
    requests.post(control + "/_sandbox/releases", timeout=10, json={
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "body": f"### Bug fixes\n- Istio add-on: asm-1-25 patched to 1.25.{100 + n}.",
    }).raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changelog", type=Path,
                        default=ROOT / "sandbox/data/CHANGELOG.md")
    parser.add_argument("--intervals", type=int, default=400)
    parser.add_argument("--new-release-every", type=int, default=50, metavar="N",
                        help="publish a release before every N-th interval (0: never)")
    parser.add_argument("--warm", type=int, default=10, help="untimed polls of each side first")
    parser.add_argument("--port-base", type=int, default=None,
                        help="the sandbox's ports: base … base+6")
    parser.add_argument("--quick", action="store_true", help="60 intervals (a few seconds)")
    args = parser.parse_args()
    intervals = 60 if args.quick else args.intervals
    every = args.new_release_every

    sb = Sandbox(Path(tempfile.mkdtemp(prefix="meshops-relbench-")),
                 args.port_base or random.randrange(16000, 20000, 10),
                 with_prometheus=False,
                 changelog=args.changelog)
    sb.start()
    r = redis.Redis(decode_responses=True)
    prefix = f"meshops-relbench-{secrets.token_hex(4)}"
    url = sb.url["control"] + FEED_PATH
    try:
        sides = [meshops_side(r, prefix, url), plain_side(url)]
        for _ in range(args.warm):
            for side in sides:
                side.poll()
        for side in sides:
            side.reset()
        feed_bytes = len(requests.get(url, timeout=15).content)
        published = 0
        for i in range(intervals):
            if every and i % every == every - 1:
                published += 1
                publish(sb.url["control"], published)
            for side in sides if i % 2 == 0 else sides[::-1]:
                side.timed()
    finally:
        sb.stop()
        shutil.rmtree(sb.state_dir, ignore_errors=True)
        keys = list(r.scan_iter(prefix + "*"))
        if keys:
            r.delete(*keys)

    m, p = sides
    print(f"release watcher: {intervals} poll intervals of the sandbox's releases feed "
          f"({len(sb.releases)} releases from {args.changelog.name}, {feed_bytes} bytes), "
          f"a new release every {every or 'never'} intervals ({published} published), "
          f"order alternating, {args.warm} warm-up polls each")
    print(f"{'side':<10}{'calls':>7}{'parsed':>9}{'total ms':>10}{'p50 ms':>9}{'max ms':>9}"
          f"{'bytes':>11}")
    for s in sides:
        print(f"{s.name:<10}{s.calls:>7}{s.parsed:>9}{sum(s.seconds) * 1e3:>10.1f}"
              f"{statistics.median(s.seconds) * 1e3:>9.2f}{max(s.seconds) * 1e3:>9.2f}"
              f"{s.bytes:>11}")
    if m.parsed != published:
        raise SystemExit(f"meshops saw {m.parsed} changes of the feed, {published} published")
    print(f"releases: time ratio {sum(m.seconds) / sum(p.seconds):.2f}, bytes ratio "
          f"{m.bytes / p.bytes:.3f} (meshops conditional vs plain full poll, "
          f"{intervals} intervals)")


if __name__ == "__main__":
    main()

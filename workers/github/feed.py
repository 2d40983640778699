"""``ReleaseFeed``: the AKS release notes from GitHub, polled with conditional requests.

Polls the GitHub releases of Azure/AKS (``GET /repos/Azure/AKS/releases``) with
``If-None-Match`` / ``If-Modified-Since`` and an optional token, falls back to the raw
CHANGELOG.md when the API is rate limited (403/429), failing (5xx) or answers something that
is not a releases list, and remembers its validators in Redis across restarts. Errors of
``requests`` are translated by :func:`workers.github.errors.translate_github_error` (a rate
limit is temporary, with the wait GitHub asked for) and logged; the poll never raises.
"""

from __future__ import annotations

from collections.abc import Callable
from email.utils import formatdate

import redis
import requests
import structlog
from redis.typing import EncodableT

from workers.github.errors import translate_github_error
from workflows.errors import PermanentError, TemporaryError
from workflows.releases import ReleaseEvent, parse, parse_releases_json

log = structlog.get_logger("meshops.watcher")


class ReleaseFeed:
    """Conditional polling of the GitHub releases API, with the CHANGELOG as a fallback."""

    def __init__(self, r: redis.Redis, prefix: str, feed_url: str, changelog_url: str | None,
                 token: str | None = None, session: requests.Session | None = None):
        self.r = r
        self.key = f"{prefix}:releases"
        self.feed_url = feed_url
        self.changelog_url = changelog_url
        self.token = token
        self.http = session or requests.Session()
        self.requests = 0

    def _get(self, name: str, url: str, accept: str) -> requests.Response:
        """A conditional GET: 200 or 304; ``TemporaryError`` / ``PermanentError`` else."""
        headers = {"Accept": accept, "User-Agent": "meshops-release-watcher"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        validators = {k.decode() if isinstance(k, bytes) else k:
                      v.decode() if isinstance(v, bytes) else v
                      for k, v in self.r.hgetall(f"{self.key}:http:{name}").items()}
        if validators.get("etag"):
            headers["If-None-Match"] = validators["etag"]
        if validators.get("last_modified"):
            headers["If-Modified-Since"] = validators["last_modified"]
        self.requests += 1
        try:
            resp = self.http.get(url, headers=headers, timeout=15)
            resp.raise_for_status()
        except requests.RequestException as exc:
            raise translate_github_error(exc, f"reading the AKS {name} at {url}") from exc
        return resp

    def _remember(self, name: str, resp: requests.Response) -> None:
        fields: dict[EncodableT, EncodableT] = {
            k: v for k, v in (("etag", resp.headers.get("ETag")),
                              ("last_modified", resp.headers.get("Last-Modified")
                               or formatdate(usegmt=True))) if v}
        self.r.hset(f"{self.key}:http:{name}", mapping=fields)

    def poll(self, keep: Callable[[list[ReleaseEvent]], None] | None = None
             ) -> list[ReleaseEvent]:
        """Events of the releases that changed since the last poll ([] when nothing did).

        ``keep``: called with the events before the answer's validators (ETag,
        Last-Modified) are stored, after which the next poll is answered 304: whoever polls
        keeps them first (the watcher, until its notices are posted), or a process killed
        in between would lose them.

        Never raises for a bad answer: a malformed feed, an HTML error page, a rate limit or
        an outage is logged and the CHANGELOG is tried instead.
        """
        try:
            resp = self._get("feed", self.feed_url, "application/vnd.github+json")
        except (TemporaryError, PermanentError) as exc:
            log.warning("releases.feed_refused", error=str(exc),
                        temporary=isinstance(exc, TemporaryError),
                        retry_after_s=getattr(exc, "delay_s", None))
            return self._changelog(keep)
        if resp.status_code == 304:
            return []
        if resp.status_code == 200:
            try:
                events = parse_releases_json(resp.json())
            except ValueError as exc:
                log.warning("releases.malformed_feed", error=str(exc)[:200],
                            content_type=resp.headers.get("Content-Type"))
            else:
                if keep is not None:
                    keep(events)
                self._remember("feed", resp)
                return events
        return self._changelog(keep)

    def _changelog(self, keep: Callable[[list[ReleaseEvent]], None] | None = None
                   ) -> list[ReleaseEvent]:
        if not self.changelog_url:
            return []
        try:
            resp = self._get("changelog", self.changelog_url, "text/plain")
        except (TemporaryError, PermanentError) as exc:
            log.warning("releases.changelog_refused", error=str(exc),
                        temporary=isinstance(exc, TemporaryError))
            return []
        if resp.status_code == 304:
            return []
        if resp.status_code != 200 or "<html" in resp.text[:500].lower():
            log.warning("releases.changelog_refused", status=resp.status_code)
            return []
        events = parse(resp.text)
        if keep is not None:
            keep(events)
        self._remember("changelog", resp)
        return events

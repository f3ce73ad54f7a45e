"""The few calls of Prometheus' HTTP API discover makes, and the window (`--since`) as Prometheus reads durations."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Mapping

from .errors import DiscoverError

# Prometheus durations (promql/parser: a number and a unit, units may be combined largest first).
_DURATION = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?\Z")
_UNIT_SECONDS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1)
TIMEOUT_SECONDS = 30


def parse_window(text: str) -> int:
    """A Prometheus duration (`7d`, `12h`, `1h30m`) in seconds."""
    match = _DURATION.match(text or "")
    if not text or not match or not any(match.groups()):
        raise DiscoverError(f"--since {text!r} is not a Prometheus duration: use a number and a unit (s, m, h, d, w, y), "
                            "e.g. 7d, 12h or 1h30m")
    seconds = sum(int(n) * unit for n, unit in zip(match.groups(), _UNIT_SECONDS) if n)
    if seconds < 60:
        raise DiscoverError(f"--since {text!r} is shorter than a minute: the proxies are scraped every 30s, give at least 1m")
    return seconds


def promql_duration(seconds: int) -> str:
    return f"{seconds}s"


class Prometheus:
    """The few calls of Prometheus' HTTP API (https://prometheus.io/docs/prometheus/latest/querying/api/) we need."""

    def __init__(self, url: str, timeout: float = TIMEOUT_SECONDS):
        parsed = urllib.parse.urlparse(url or "")
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise DiscoverError(f"--prometheus {url!r} is not an http(s) URL, e.g. http://prometheus.monitoring:9090")
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _get(self, path: str, params: Mapping[str, Any]) -> Any:
        address = f"{self.url}{path}?{urllib.parse.urlencode(params, doseq=True)}"
        try:
            with urllib.request.urlopen(address, timeout=self.timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as err:
            detail = _api_error(err.read())
            raise DiscoverError(f"Prometheus at {self.url} answered {err.code} to {path}: {detail}") from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise DiscoverError(f"cannot reach Prometheus at {self.url}: {reason}. Check --prometheus "
                                "(e.g. kubectl -n monitoring port-forward svc/prometheus-operated 9090)") from None
        try:
            answer = json.loads(body)
        except ValueError:
            raise DiscoverError(f"{self.url}{path} did not answer with Prometheus' JSON API: is --prometheus the "
                                "Prometheus server (not Grafana or Alertmanager)?") from None
        if not isinstance(answer, dict) or answer.get("status") != "success":
            raise DiscoverError(f"Prometheus at {self.url} refused {path}: {_api_error(body)}")
        return answer.get("data")

    def query(self, promql: str, at: float) -> list[dict[str, Any]]:
        return self._get("/api/v1/query", {"query": promql, "time": f"{at:.3f}"})["result"]

    def query_range(self, promql: str, start: float, end: float, step: int) -> list[dict[str, Any]]:
        return self._get("/api/v1/query_range",
                         {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": step})["result"]

    def metric_names(self) -> set[str]:
        return set(self._get("/api/v1/label/__name__/values", {}) or [])


def _api_error(body: bytes) -> str:
    try:
        answer = json.loads(body)
        return f"{answer.get('errorType', 'error')}: {answer.get('error', '')}".strip()
    except ValueError:
        return body[:200].decode("utf-8", "replace").strip() or "no details"

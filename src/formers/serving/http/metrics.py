"""Server metrics in Prometheus' text exposition format (version 0.0.4), with no client library.

Gauges come from the engine's own counters (a snapshot taken by the engine thread after each step);
latency histograms are observed by the request handlers as tokens reach the client.
"""
from __future__ import annotations

import bisect
import threading
from typing import Mapping

PREFIX = "formers"
TTFT_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5)


class Histogram:
    """Cumulative-bucket histogram; observe() is thread-safe."""

    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...]):
        self.name, self.help, self.buckets = name, help_text, buckets
        self.counts = [0] * (len(buckets) + 1)  # last slot: +Inf
        self.sum, self.count = 0.0, 0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        with self._lock:
            self.counts[bisect.bisect_left(self.buckets, value)] += 1
            self.sum += value
            self.count += 1

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        with self._lock:
            running = 0
            for bound, n in zip((*self.buckets, float("inf")), self.counts):
                running += n
                label = "+Inf" if bound == float("inf") else repr(bound)
                lines.append(f'{self.name}_bucket{{le="{label}"}} {running}')
            lines += [f"{self.name}_sum {self.sum}", f"{self.name}_count {self.count}"]
        return lines


class ServerMetrics:
    """Request counters and latency histograms kept by the HTTP layer."""

    def __init__(self) -> None:
        self.ttft = Histogram(f"{PREFIX}_time_to_first_token_seconds",
                              "Time from request arrival to its first generated token.", TTFT_BUCKETS)
        self.itl = Histogram(f"{PREFIX}_inter_token_latency_seconds",
                             "Time between consecutive generated tokens of one request.", ITL_BUCKETS)
        self.finished: dict[str, int] = {}
        self.errors: dict[int, int] = {}
        self._lock = threading.Lock()

    def request_finished(self, reason: str) -> None:
        with self._lock:
            self.finished[reason] = self.finished.get(reason, 0) + 1

    def request_failed(self, status: int) -> None:
        with self._lock:
            self.errors[status] = self.errors.get(status, 0) + 1

    def render(self, raw_engine_stats: Mapping[str, object]) -> str:
        """The exposition text: engine series (from AsyncEngine.stats()), then the HTTP layer's own."""
        engine_stats = normalise_engine_stats(raw_engine_stats)
        lines: list[str] = []
        for key, kind, help_text in _ENGINE_SERIES:
            if key in engine_stats:
                name = f"{PREFIX}_{key}"
                lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {engine_stats[key]}"]
        finished = raw_engine_stats.get("finished")
        if isinstance(finished, Mapping):
            name = f"{PREFIX}_engine_requests_finished_total"
            lines += [f"# HELP {name} Engine sequences finished, by reason (abort: cancelled, e.g. the client left).",
                      f"# TYPE {name} counter"]
            lines += [f'{name}{{finish_reason="{r}"}} {n}' for r, n in sorted(finished.items())]
        name = f"{PREFIX}_requests_finished_total"
        lines += [f"# HELP {name} Choices answered to clients, by finish reason.", f"# TYPE {name} counter"]
        with self._lock:
            lines += [f'{name}{{finish_reason="{r}"}} {n}' for r, n in sorted(self.finished.items())]
            name = f"{PREFIX}_request_errors_total"
            lines += [f"# HELP {name} Requests answered with an error, by HTTP status.", f"# TYPE {name} counter"]
            lines += [f'{name}{{status="{s}"}} {n}' for s, n in sorted(self.errors.items())]
        lines += self.ttft.render() + self.itl.render()
        return "\n".join(lines) + "\n"


def normalise_engine_stats(stats: Mapping[str, object]) -> dict[str, float]:
    """LLMEngine.stats() (as AsyncEngine snapshots it) under the series names below, plus derived ratios."""
    out = {name: stats[key] for key, name in _ENGINE_KEYS.items() if isinstance(stats.get(key), (int, float))}
    if out.get("kv_blocks_total"):
        out["kv_cache_usage_ratio"] = out.get("kv_blocks_used", 0) / out["kv_blocks_total"]
    queries = out.get("prefix_cache_queries_total", 0)
    out["prefix_cache_hit_rate"] = out.get("prefix_cache_hits_total", 0) / queries if queries else 0.0
    return out


_ENGINE_KEYS = {  # LLMEngine / AsyncEngine stats key -> series name (without the prefix)
    "running": "num_requests_running", "waiting": "num_requests_waiting",
    "kv_blocks_used": "kv_blocks_used", "kv_blocks_total": "kv_blocks_total",
    "prefix_cache_queries": "prefix_cache_queries_total", "prefix_cache_hits": "prefix_cache_hits_total",
    "generation_tokens_total": "generation_tokens_total", "prompt_tokens": "prompt_tokens_total",
    "generation_tokens_per_second": "generation_tokens_per_second", "preemptions": "preemptions_total",
    "engine_steps_total": "engine_steps_total",
}

# (key in the normalised stats, Prometheus type, help): the server's normalised stats names
_ENGINE_SERIES = (
    ("num_requests_running", "gauge", "Requests in the running batch."),
    ("num_requests_waiting", "gauge", "Requests queued, waiting for a slot or KV blocks."),
    ("kv_blocks_used", "gauge", "KV cache blocks in use."),
    ("kv_blocks_total", "gauge", "KV cache blocks in the pool."),
    ("kv_cache_usage_ratio", "gauge", "Fraction of KV cache blocks in use."),
    ("prefix_cache_queries_total", "counter", "Prompt blocks looked up in the prefix cache."),
    ("prefix_cache_hits_total", "counter", "Prompt blocks found in the prefix cache."),
    ("prefix_cache_hit_rate", "gauge", "Prefix cache hits / queries since start."),
    ("generation_tokens_total", "counter", "Tokens generated since start."),
    ("generation_tokens_per_second", "gauge", "Tokens generated per second over the last few seconds."),
    ("prompt_tokens_total", "counter", "Prompt tokens of admitted requests since start."),
    ("preemptions_total", "counter", "Requests preempted (blocks ran out) and later recomputed."),
    ("engine_steps_total", "counter", "Engine steps run since start."),
)

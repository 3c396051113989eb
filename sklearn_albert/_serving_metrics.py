"""Prometheus metrics of ``sklearn-albert serve``: requests, their status and latency.

LitServe runs several HTTP processes when asked for several workers, and a scrape of
``GET /metrics`` reaches any one of them. So the counts live in one table in shared
memory, created before LitServe starts its processes; every process adds to it, and
every process renders the same totals through prometheus_client's custom-collector API
(:meth:`RequestTable.collect`). Nothing here is a metrics library of its own: the
exposition format, metric types and content type are prometheus_client's.

The metrics, each labelled by ``endpoint`` (``/predict``, ``/predict_proba``,
``/transform``):

``sklearn_albert_requests_total{endpoint, status}``
    Requests answered, by status class ("2xx", "3xx", "4xx", "5xx"). The 503s of ``--max-queue``
    count here too: the middleware wraps the queue limit.
``sklearn_albert_request_seconds{endpoint}``
    A histogram of the seconds from a request's arrival to its answer's last byte.
``sklearn_albert_requests_in_flight``
    Requests waiting or being computed, the number ``--max-queue`` bounds.
"""

import multiprocessing
import time

#: Upper bounds (seconds) of the latency histogram's buckets; +Inf follows.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

#: Status classes counted apart.
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx")


class RequestTable:
    """Request counts and latency histograms per endpoint, in shared memory.

    Parameters
    ----------
    endpoints : iterable of str
        The paths counted, such as ``"/predict"``.
    in_flight : multiprocessing.Value, default=None
        The server's count of requests in flight, reported as a gauge.
    """

    def __init__(self, endpoints, in_flight=None):
        self.endpoints = tuple(endpoints)
        self.in_flight = in_flight
        n = len(self.endpoints)
        # One lock for the table: a request adds a few integers under it, once.
        self._lock = multiprocessing.Lock()
        self._answers = multiprocessing.Array("q", n * len(STATUS_CLASSES), lock=False)
        self._buckets = multiprocessing.Array("q", n * (len(LATENCY_BUCKETS) + 1), lock=False)
        self._seconds = multiprocessing.Array("d", n, lock=False)

    def record(self, endpoint, status, seconds):
        """Count one answered request to ``endpoint``."""
        row = self.endpoints.index(endpoint)
        kind = min(max(status // 100 - 2, 0), len(STATUS_CLASSES) - 1)
        bucket = next(
            (i for i, bound in enumerate(LATENCY_BUCKETS) if seconds <= bound),
            len(LATENCY_BUCKETS),
        )
        with self._lock:
            self._answers[row * len(STATUS_CLASSES) + kind] += 1
            self._buckets[row * (len(LATENCY_BUCKETS) + 1) + bucket] += 1
            self._seconds[row] += seconds

    def collect(self):
        """The metrics, as prometheus_client metric families (the collector protocol)."""
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        with self._lock:
            answers = list(self._answers)
            buckets = list(self._buckets)
            seconds = list(self._seconds)
        requests = CounterMetricFamily(
            "sklearn_albert_requests",
            "Requests answered, by endpoint and status class.",
            labels=["endpoint", "status"],
        )
        latency = HistogramMetricFamily(
            "sklearn_albert_request_seconds",
            "Seconds from a request's arrival to its answer.",
            labels=["endpoint"],
        )
        width = len(LATENCY_BUCKETS) + 1
        for row, endpoint in enumerate(self.endpoints):
            for kind, name in enumerate(STATUS_CLASSES):
                requests.add_metric([endpoint, name], answers[row * len(STATUS_CLASSES) + kind])
            cumulative, total = [], 0
            for bound, count in zip(
                [*map(str, LATENCY_BUCKETS), "+Inf"], buckets[row * width : (row + 1) * width]
            ):
                total += count
                cumulative.append((bound, total))
            latency.add_metric([endpoint], cumulative, sum_value=seconds[row])
        yield requests
        yield latency
        if self.in_flight is not None:
            yield GaugeMetricFamily(
                "sklearn_albert_requests_in_flight",
                "Requests waiting for a worker or being computed.",
                value=self.in_flight.value,
            )


class RequestMetrics:
    """ASGI middleware: record every request to the table's endpoints when answered."""

    def __init__(self, app, *, table):
        self.app = app
        self.table = table

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] not in self.table.endpoints:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]  # what a handler that raises before answering amounts to

        async def send_and_watch(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            self.table.record(scope["path"], status[0], time.perf_counter() - started)


def metrics_endpoint(table):
    """The ``GET /metrics`` handler: the table in Prometheus' text format."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from starlette.responses import Response

    registry = CollectorRegistry(auto_describe=False)
    registry.register(table)

    async def metrics():
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return metrics

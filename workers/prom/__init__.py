"""Istio's standard metrics in Prometheus (``PrometheusMetricsApi``)."""

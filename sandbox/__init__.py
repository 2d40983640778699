"""The embedded sandbox: local ARM, Kubernetes, Istio-traffic and Slack emulators and a real
Prometheus, for the demo and the tests (DESIGN.md §8).

It imports nothing of the product: meshops reaches it through its ordinary adapters on the
real SDKs, only the endpoints and credentials differ.
"""

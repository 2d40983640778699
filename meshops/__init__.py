"""meshops: ChatOps for the Istio-based service mesh add-on of AKS (composition root)."""

__version__ = "0.1.0"

"""One cluster's Kubernetes API (``KubernetesClusterApi``)."""

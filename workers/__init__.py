"""Celery app and tasks, and every adapter that acts on the world: AKS, Kubernetes,
Prometheus, Slack Web API, the Redis run store."""

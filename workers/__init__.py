"""Celery app and tasks, and every adapter that acts on the world, one sub-package per seam:
``arm`` (AKS), ``kube`` (Kubernetes), ``prom`` (Prometheus), ``slack`` (Slack Web API),
``github`` (release notes), ``store`` (Redis) and ``tasks`` (Celery). ``wiring`` builds the
engine for the bot and the worker alike."""

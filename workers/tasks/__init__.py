"""The Celery side: the app and its tasks (``celery -A workers.tasks.app worker``)."""

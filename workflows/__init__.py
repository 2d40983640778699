"""The core of meshops: domain model, workflows as step functions, gates, planning, ports.

No SDK, Celery or Slack imports; time comes in as an argument (``now``, Unix seconds).
"""

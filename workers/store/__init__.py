"""Redis: the run store (``RedisRunStore``) and the audit stream (``AuditLog``)."""

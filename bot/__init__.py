"""Inbound Slack: the Bolt app, its listeners, command parsing and access control."""

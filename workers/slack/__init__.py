"""The Slack Web API: the client and user groups, Block Kit rendering of runs, the notifier
that keeps Slack in step with the run store, and gate charts."""

"""worker: the Django worker process — receive, route, run consumers."""

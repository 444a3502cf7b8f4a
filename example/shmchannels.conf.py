# shmchannels configuration of the example chat site (gunicorn-style: plain Python).
# `make run` starts it from this directory:  ../.venv/bin/shmchannels -c shmchannels.conf.py
# Command-line options win over this file (e.g. `-b 127.0.0.1:8123`).

bind = "127.0.0.1:8000"

# One asyncio interface server (HTTP + WebSocket) and two Django workers.
interfaces = 1
workers = 2

django_settings = "chatsite.settings"

loglevel = "info"
# Access log lines (HTTP requests and WebSocket connects/disconnects) on stdout.
accesslog = "-"

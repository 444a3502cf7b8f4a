"""``manage.py runworker``: run a Channels worker in this process (Channels 1.x command).

::

    manage.py runworker [--layer ALIAS] [--threads N] [--only-channels GLOB ...]
                        [--exclude-channels GLOB ...] [--max-messages N] [-v 2]

It consumes from the layer named by ``--layer`` until SIGTERM (finish the current
message, exit 0) or SIGINT/SIGQUIT (exit now). The in-memory layer is refused: a worker
in its own process would never see what an interface server sends.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from channels import DEFAULT_CHANNEL_LAYER


def _globs(values: list[str] | None) -> list[str]:
    # Repeatable options that also take comma-separated lists (',' is never part of a name).
    return [glob.strip() for value in values or [] for glob in value.split(",") if glob.strip()]


class Command(BaseCommand):
    """``runworker``: consume messages from a channel layer."""

    help = "Runs a Channels worker: receives messages from the channel layer and runs their consumers."
    leave_locale_alone = True

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--layer", dest="layer", default=DEFAULT_CHANNEL_LAYER,
            help="Alias of the channel layer in CHANNEL_LAYERS (default: %(default)s).",
        )
        parser.add_argument(
            "--only-channels", dest="only_channels", action="append", metavar="GLOB",
            help="Listen only on channels matching this glob (repeatable, or comma-separated).",
        )
        parser.add_argument(
            "--exclude-channels", dest="exclude_channels", action="append", metavar="GLOB",
            help="Do not listen on channels matching this glob (repeatable, or comma-separated).",
        )
        parser.add_argument(
            "--threads", dest="threads", type=int, default=1,
            help="Number of consumer threads (default: %(default)s).",
        )
        parser.add_argument(
            "--max-messages", dest="max_messages", type=int, default=0,
            help="Exit after this many messages (0: never; a supervisor restarts the worker).",
        )
        parser.add_argument(
            "--max-messages-jitter", dest="max_messages_jitter", type=int, default=0,
            help="Add a random 0..N to --max-messages so workers do not all restart together.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from channels.signals import worker_process_ready
        from worker._loop import Worker
        from worker._run import WorkerConfigError, load_layer_wrapper, release_layer, setup_logging

        verbosity = options["verbosity"]
        for name in ("threads", "max_messages", "max_messages_jitter"):
            minimum = 1 if name == "threads" else 0
            if options[name] < minimum:
                raise CommandError(f"--{name.replace('_', '-')} must be at least {minimum}")
        setup_logging(verbosity, force=True)
        try:
            wrapper = load_layer_wrapper(options["layer"])
        except WorkerConfigError as exc:
            raise CommandError(str(exc)) from None
        worker = Worker(
            wrapper,
            threads=options["threads"],
            only_channels=_globs(options["only_channels"]),
            exclude_channels=_globs(options["exclude_channels"]),
            max_messages=options["max_messages"],
            max_messages_jitter=options["max_messages_jitter"],
            signal_handlers=True,
            verbosity=verbosity,
        )
        if not worker.listen_channels():
            raise CommandError(worker.no_channels_message())
        if verbosity >= 1:
            self.stderr.write(f"Running worker against channel layer {wrapper}")
        worker_process_ready.send(sender=worker)
        try:
            code = worker.run()
        finally:
            release_layer(wrapper, worker)
        if code:
            raise CommandError(f"Worker exited with code {code}", returncode=code)

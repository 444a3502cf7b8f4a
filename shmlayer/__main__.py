"""``python -m shmlayer stats [NAME] | flush NAME | unlink NAME``."""

from __future__ import annotations

import argparse
import json
import os
import sys

from ._segment import SegmentError, default_segment_name, segment_path, validate_segment_name


def _rows(text: str) -> int:
    """argparse type of ``--limit``: a count of rows, so never negative."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def _seconds(text: str) -> float:
    """argparse type of ``--lock-timeout``: a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, not {text!r}") from None
    if not 0 < value < 1e9:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds above 0, not {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code (0 ok, 1 error, 2 usage)."""
    parser = argparse.ArgumentParser(prog="python -m shmlayer", description="Inspect or manage a shmchannels segment.")
    sub = parser.add_subparsers(dest="command", required=True)
    stats = sub.add_parser("stats", help="channels, groups, memory and processes of a segment")
    stats.add_argument("name", nargs="?", help="segment name (default: this project's)")
    stats.add_argument("--json", action="store_true", help="print the snapshot as JSON")
    stats.add_argument("--limit", type=_rows, default=50, help="rows per section (default 50)")
    flush = sub.add_parser("flush", help="empty every channel and group")
    flush.add_argument("name")
    for command in (stats, flush):
        command.add_argument("--lock-timeout", type=_seconds, default=5.0,
                             help="give up if the segment lock stays held this long (default 5 s)")
    sub.add_parser("unlink", help="remove the segment").add_argument("name")
    args = parser.parse_args(argv)
    try:
        name = validate_segment_name(args.name) if args.name else default_segment_name()
    except TypeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "unlink":
        try:
            os.unlink(segment_path(name))
        except FileNotFoundError:
            print(f"error: no shm segment named {name!r}", file=sys.stderr)
            return 1
        print(f"unlinked {segment_path(name)}")
        return 0
    from .layer import ShmChannelLayer

    try:
        # max_message_size=1: inspecting must work whatever size the segment was made with.
        layer = ShmChannelLayer(name=name, max_message_size=1, _create=False)
    except (SegmentError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        if args.command == "flush":
            layer.flush(lock_timeout=args.lock_timeout)
            print(f"flushed {name}")
            return 0
        from ._stats import format_stats

        snap = layer.stats(lock_timeout=args.lock_timeout)
        print(json.dumps(snap, indent=2, sort_keys=True) if args.json else format_stats(snap, args.limit))
        return 0 if not snap["problems"] else 1
    except TimeoutError as exc:
        # A holder that is stopped (SIGSTOP, a debugger) or stuck: say who, change nothing.
        print(f"error: {exc}; is that process stopped or stuck? nothing was changed", file=sys.stderr)
        return 1
    finally:
        layer.close()


if __name__ == "__main__":
    sys.exit(main())

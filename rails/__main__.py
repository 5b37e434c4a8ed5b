"""Command line: ``python -m rails check FILE [--against PARENT_FILE]``.

Prints one line per violation (``FILE:LINE: [rule] message (hint: ...)``) and exits with
0 when the file passes every rail (printing ``ok: FILE passes N rails``), 1 when there are
violations, 2 on a usage error or an unreadable file. Only the standard library and the rails.
"""

from __future__ import annotations

import argparse
import sys

EXIT_OK, EXIT_VIOLATIONS, EXIT_USAGE = 0, 1, 2


def _read_bytes(path: str) -> bytes:
    """Read a file as raw bytes (decoding is the syntax rail's job); exits 2 if unreadable."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        print(f"error: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the rails, and return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m rails", description="Static checks on train.py.")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="check a proposed file against the rails")
    check.add_argument("file", help="the proposed file, e.g. train.py")
    check.add_argument("--against", metavar="PARENT_FILE", help="the parent version of the file")
    args = parser.parse_args(argv)

    from rails import ALL_RAILS, check_source

    new_source = _read_bytes(args.file)
    old_source = _read_bytes(args.against) if args.against else None
    violations = check_source(old_source, new_source)
    for violation in violations:
        print(violation.format(args.file))
    if violations:
        return EXIT_VIOLATIONS
    print(f"ok: {args.file} passes {len(ALL_RAILS)} rails")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

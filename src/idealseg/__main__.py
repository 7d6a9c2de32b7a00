"""Allows `python -m idealseg` and `torchrun -m idealseg`."""

try:  # Ctrl-C while the CLI's module loads, before main() can take it: the same one line
    from idealseg.cli import main
except KeyboardInterrupt:
    import sys

    print("interrupted", file=sys.stderr)
    raise SystemExit(130) from None

raise SystemExit(main())

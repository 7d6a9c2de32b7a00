"""Allows `python -m idealseg` and `torchrun -m idealseg`."""

from idealseg.cli import main

raise SystemExit(main())

"""`python -m lmwright.cli`, as `python -m lmwright` and the `lmwright` script."""

from lmwright.cli import main

main()

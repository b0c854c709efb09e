"""`python -m scangate.cli`: the same as the `scangate` command."""

from . import main

main()

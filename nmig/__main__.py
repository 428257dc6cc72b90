"""`python -m nmig` runs the command line."""

from nmig.cli import main

main()

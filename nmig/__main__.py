"""`python -m nmig` runs the command line."""

from nmig.parent_death import die_with_named_parent

die_with_named_parent()  # before anything else: `nmig migrate`'s export child (see nmig.parent_death)

from nmig.cli import main  # noqa: E402

main()

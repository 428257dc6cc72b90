"""`python -m nmig` runs the command line."""

from nmig.child_gate import wait_for_go
from nmig.parent_death import die_with_named_parent

die_with_named_parent()  # before anything else: `nmig migrate`'s export child (see nmig.parent_death)
wait_for_go()  # the export child of `nmig migrate` goes once the parent has tried the 3.x token (nmig.child_gate)

from nmig.cli import main  # noqa: E402

main()

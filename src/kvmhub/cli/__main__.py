"""``python -m kvmhub.cli``: the same as the ``kvmhub`` command."""

from kvmhub.cli.entry import main

main()

"""``python -m cnnzip`` (and ``torchrun -m cnnzip``) runs the CLI."""

from cnnzip.cli import main

main()

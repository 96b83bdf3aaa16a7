"""``python -m voicepipe.cli``: the same as the ``voicepipe`` command."""

from voicepipe.cli import main

main()

"""The example server's settings: the library's, with the repository's forms folder.

Every setting is :class:`voicepipe.server.ServerSettings` (``VOICEPIPE_*``
variables or a ``.env`` file); only the default of ``forms_dir`` differs.
"""

from __future__ import annotations

from pathlib import Path

from voicepipe.server import ServerSettings as _LibrarySettings

HERE = Path(__file__).resolve().parent


class ServerSettings(_LibrarySettings):
    """The library's settings; forms default to ``examples/forms``."""

    forms_dir: Path = HERE.parent / "forms"

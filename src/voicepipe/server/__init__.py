"""The voicepipe server (the ``server`` extra): the browser page, conversation and form
sessions over WebSockets, their guards, and ``voicepipe serve``.

::

    from voicepipe.server import ServerSettings, create_app

    app = create_app(ServerSettings(max_sessions=20))  # run it with uvicorn

``docs/server.md`` has the settings, the wire protocol and the security model.
"""

from __future__ import annotations

from voicepipe.server.app import VoiceServer, create_app
from voicepipe.server.providers import Providers
from voicepipe.server.security import RedactToken
from voicepipe.server.settings import ServerSettings

__all__ = ["Providers", "RedactToken", "ServerSettings", "VoiceServer", "create_app"]

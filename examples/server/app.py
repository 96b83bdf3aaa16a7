"""The voicepipe example server: talk to an assistant, or fill in a form, from a browser.

A thin user of :mod:`voicepipe.server` (``pip install 'voicepipe[server]'``
and ``voicepipe serve`` run the same server without a clone). From the
repository root::

    uvicorn examples.server.app:app

then open http://127.0.0.1:8000. Providers are chosen as by the CLI
(:mod:`voicepipe.config`); ``VOICEPIPE_STT=fake VOICEPIPE_LLM=fake
VOICEPIPE_TTS=fake`` is a dry run. The only difference from the library's
defaults is the forms folder, ``examples/forms`` (``settings.py``).
"""

from __future__ import annotations

from examples.server.settings import ServerSettings
from voicepipe.server import Providers, create_app

__all__ = ["Providers", "ServerSettings", "app", "create_app"]

app = create_app(ServerSettings())

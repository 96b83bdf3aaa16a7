"""Transports: carry a voice session between a client and a :class:`~voicepipe.Pipeline`.

:mod:`voicepipe.transports.websocket` serves a session over a Starlette/FastAPI
WebSocket (needs the ``server`` extra). Import it by its full name: this
package imports nothing, so ``import voicepipe`` never loads Starlette.
"""

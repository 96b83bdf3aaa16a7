"""Transports: carry a voice session between a client and a :class:`~voicepipe.Pipeline`.

:mod:`voicepipe.transports.websocket` is the transport core: it serves a
session over a Starlette/FastAPI WebSocket (needs the ``server`` extra).
:mod:`voicepipe.transports.dialect` is the interface of wire dialects (what a
client's frames mean and what it receives), and
:mod:`voicepipe.transports.dialects` holds one module per dialect. Import
them by their full names: this package imports nothing, so ``import
voicepipe`` never loads Starlette.
"""

"""One module per wire dialect (see :mod:`voicepipe.transports.dialect` for the interface).

:mod:`~voicepipe.transports.dialects.voicepipe` is voicepipe's own protocol,
the default of :func:`voicepipe.transports.websocket.serve`.
"""

"""The voicepipe example server (run: ``uvicorn examples.server.app:app``)."""

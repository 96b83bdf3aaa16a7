"""Runnable examples: a quickstart script, the FastAPI server, forms and audio samples."""

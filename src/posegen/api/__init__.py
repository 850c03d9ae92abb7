"""The HTTP API (FastAPI) under ``/api/pose-generator``: a thin adapter over the core.

Build it with :func:`posegen.api.app.create_app`; nothing here runs at import time.
"""

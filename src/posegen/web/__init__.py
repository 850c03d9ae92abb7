"""The operator dashboard and generation gallery, served by the API process under ``/ui``.

``include_web(app, settings, engine)`` mounts it; the core never imports this package.
"""

from posegen.web.routes import include_web

__all__ = ["include_web"]

"""The labeling app: server-rendered pages for labelers and the admin, a JSON API for scripts,
both over one LabelStore (framework/labeling/app/server.py builds it)."""

from framework.labeling.app.server import create_app

__all__ = ["create_app"]

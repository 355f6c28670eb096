"""The web dashboard: ``offload dashboard`` (``pip install "offload[dashboard]"``).

A face of the library (the top layer): it reads a broker through its
inspector only, so every durable broker shows the same pages. Built on
Starlette (ASGI), Jinja2 (templates) and Uvicorn (the server).
"""

from __future__ import annotations

from ._app import create_app
from ._security import CONTENT_SECURITY_POLICY, check_bind

__all__ = ["CONTENT_SECURITY_POLICY", "check_bind", "create_app"]

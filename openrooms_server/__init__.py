"""The deployable control plane: the OpenRooms REST API on Starlette, served by uvicorn.

Installed with ``pip install 'openrooms[server]'``; started with ``openrooms serve`` (or the
``openrooms-server`` script). In Python::

    from openrooms_server import Settings, create_app

    app = create_app(Settings(db="sqlite:///rooms.db"))  # an ASGI app: uvicorn, TestClient

See docs/server.md for the routes, their JSON and the error codes.
"""

from openrooms_server.app import create_app
from openrooms_server.errors import InsecureBindError
from openrooms_server.settings import Settings

__all__ = ["InsecureBindError", "Settings", "create_app"]

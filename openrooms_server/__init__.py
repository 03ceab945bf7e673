"""The deployable control plane: a Starlette REST API, RQ workers and a dashboard.

Installed with ``pip install 'openrooms[server]'``. The API, worker and dashboard
land in a later release; this package is importable so the layout is fixed now.
"""

__all__: list[str] = []

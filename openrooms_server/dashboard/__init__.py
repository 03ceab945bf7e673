"""The dashboard: server-rendered pages at ``/`` over the same runtime as ``/api``.

Rooms (filtered, searched, paged, refreshed live), a room (its graph with the current node
lit, its variables, memory and usage, its log streamed live over the API's SSE stream, and
forms to answer, cancel and resume it), workflows and tools, and a login page when API
keys are configured. See docs/dashboard.md.
"""

from openrooms_server.dashboard.pages import DASHBOARD_CSP, FORM_ROUTES, dashboard_routes, is_page

__all__ = ["DASHBOARD_CSP", "FORM_ROUTES", "dashboard_routes", "is_page"]

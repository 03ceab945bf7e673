"""The dashboard: server-rendered pages at ``/`` over the same runtime as ``/api``.

Rooms (filtered, searched, paged, refreshed live), a room (its graph with the current node
lit, its variables, memory and usage, its log streamed live over the API's SSE stream, and
forms to answer, cancel and resume it), workflows and tools, and a login page when API
keys are configured. See docs/dashboard.md.

Modules: :mod:`~openrooms_server.dashboard.pages` (the pages and forms, and the routes),
:mod:`~openrooms_server.dashboard.login`, :mod:`~openrooms_server.dashboard.http`
(rendering, forms, the CSP), :mod:`~openrooms_server.dashboard.forms` (form fields from a
JSON schema), :mod:`~openrooms_server.dashboard.listing` (the rooms list's queries).
"""

from openrooms_server.dashboard.http import DASHBOARD_CSP, FORM_ROUTES, is_page
from openrooms_server.dashboard.pages import dashboard_routes

__all__ = ["DASHBOARD_CSP", "FORM_ROUTES", "dashboard_routes", "is_page"]

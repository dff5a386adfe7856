"""The web dashboard at ``/admin/``: static HTML, JS and CSS from
``gateway/dashboard/``, served by the gateway itself (no CDN, no build step).

The files hold no data and no secret; the page asks for the admin token and
then talks to ``/admin/api/v1`` with it, so serving them unauthenticated is
safe.  Only the files listed here are served (no directory walking).
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

_FILES = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "charts.js": "text/javascript",
    "pages.js": "text/javascript",
    "style.css": "text/css",
}
# The page may only load its own scripts and talk to its own origin.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)


def _read(name: str) -> bytes:
    return resources.files("gateway").joinpath("dashboard", name).read_bytes()


def add_dashboard_routes(app: web.Application) -> None:
    cache = {name: _read(name) for name in _FILES}

    async def serve(request: web.Request) -> web.Response:
        name = request.match_info.get("name") or "index.html"
        if name not in cache:
            return web.Response(status=404, text="not found")
        return web.Response(
            body=cache[name],
            content_type=_FILES[name],
            charset="utf-8",
            headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        )

    async def redirect(_request: web.Request) -> web.Response:
        # A plain response, not HTTPFound: the REST middleware turns raised
        # HTTP exceptions into error bodies.
        return web.Response(status=302, headers={"Location": "/admin/"})

    app.router.add_get("/admin", redirect)
    app.router.add_get("/admin/", serve)
    app.router.add_get("/admin/{name:[a-z]+\\.(?:html|js|css)}", serve)

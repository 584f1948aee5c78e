"""The installable app: manifest, service worker (with its precache list) and offline page."""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app, render_template, url_for
from flask_babel import gettext as _

from ..access import PUBLIC, allow

bp = Blueprint("pwa", __name__)

# The app shell: what a nurse needs to file with no network. Report pages are never cached:
# they hold a child's and a mother's personal data.
SHELL_PAGES = ("/reports/new", "/offline")
SHELL_STATIC = ("css/besik.css", "js/page.js", "js/api.js", "js/outbox.js", "js/app.js",
                "js/inbox.js", "js/countdown.js", "icons/icon-192.png", "icons/icon-512.png",
                "icons/maskable-512.png")


@functools.cache
def static_version(static_folder: str) -> str:
    """A hash of every static file: each deploy gets a new cache, and old ones are dropped."""
    digest = hashlib.sha256()
    for path in sorted(Path(static_folder).rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(static_folder)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@bp.get("/sw.js")
@allow(PUBLIC)
def service_worker() -> Response:
    """The service worker, served from / so that its scope is the whole app."""
    static_folder = str(current_app.static_folder)
    version = static_version(static_folder)
    shell = [*SHELL_PAGES, "/manifest.webmanifest",
             *(url_for("static", filename=f) for f in SHELL_STATIC)]
    source = (Path(static_folder) / "js" / "sw.js").read_text(encoding="utf-8")
    source = source.replace("__VERSION__", version).replace("__SHELL__", json.dumps(shell))
    response = Response(source, mimetype="text/javascript")
    response.headers["Cache-Control"] = "no-cache"  # browsers must see a new deploy at once
    response.headers["Service-Worker-Allowed"] = "/"
    return response


@bp.get("/manifest.webmanifest")
@allow(PUBLIC)
def manifest() -> Response:
    """What an installed Besik looks like on the home screen."""
    icon = functools.partial(url_for, "static")
    body: dict[str, Any] = {
        "name": "Besik",
        "short_name": "Besik",
        "description": _("Report an abandoned newborn to the guardianship authority."),
        "id": "/",
        "start_url": "/reports/new",
        "scope": "/",
        "display": "standalone",
        "orientation": "portrait",
        "theme_color": "#0b5f6b",
        "background_color": "#f7f9fa",
        "icons": [
            {"src": icon(filename="icons/icon-192.png"), "sizes": "192x192",
             "type": "image/png", "purpose": "any"},
            {"src": icon(filename="icons/icon-512.png"), "sizes": "512x512",
             "type": "image/png", "purpose": "any"},
            {"src": icon(filename="icons/maskable-512.png"), "sizes": "512x512",
             "type": "image/png", "purpose": "maskable"},
        ],
    }
    response = Response(json.dumps(body, ensure_ascii=False),
                        mimetype="application/manifest+json")
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/offline")
@allow(PUBLIC)
def offline() -> str:
    """Shown for any page that is not in the app shell while there is no network."""
    return render_template("pwa/offline.html")

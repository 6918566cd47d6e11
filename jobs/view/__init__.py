"""`vz view`: a browser viewer of a store, served live on loopback or written as a static site.

`data` (what each page shows, read lazily from the store and its aggregate), `server` (the local,
read-only HTTP server), `build` (the static site), `command` (the `vz view` command), `static/`
(the app: HTML, CSS and one small JavaScript file; no CDN, nothing fetched from elsewhere).
"""

from jobs.view.build import build_site
from jobs.view.data import ViewData, ViewError
from jobs.view.server import make_server

__all__ = ["ViewData", "ViewError", "build_site", "make_server"]

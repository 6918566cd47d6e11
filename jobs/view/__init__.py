"""`vz view`: a browser viewer of a store, served live on loopback or written as a static site.

`data` (what each page shows, read lazily from the store and its aggregate), `samples` (decile
samples of an example statistic), `evaluation` (`vz evaluate` summaries), `compare` (two stores of
the same texts), `server` (the local, read-only HTTP server), `build` (the static site), and
`static/` (the app: HTML, CSS and three small scripts; no CDN, nothing fetched from elsewhere).
The command itself is `jobs.cli.view`. User guide: docs/viewer.md.
"""

from jobs.view.build import build_site
from jobs.view.data import ViewData, ViewError
from jobs.view.server import make_server

__all__ = ["ViewData", "ViewError", "build_site", "make_server"]

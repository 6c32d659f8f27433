"""Staff dashboards: server-rendered pages (简体中文 first, English toggle) with live values over SSE.

- ``routes.py``: ``mount_dashboards(app)`` adds the pages (``/``, ``/estates/{code}``, ``/rooms/{id}``,
  ``/devices/{id}``, ``/ingest``, ``/login``, ``/lang/{zh|en}``), the live streams (``/live/...``),
  ``/static`` and the lifespan of the LISTEN hub to the API application.
- ``live.py``: one ``LISTEN steward_ingest`` connection per process fanned out to the SSE streams.
- ``data.py``: what each page shows, as plain dicts shared by the first render and the live updates.
- ``i18n.py``: every UI string in both languages, labels for metrics and kinds, value/time/age formatting.
- ``static/``: the page script and stylesheet; ``vendor/echarts`` is Apache ECharts, served from here.
"""

"""Staff dashboards: server-rendered pages (简体中文 first, English toggle) with live values over SSE.

- ``app.py``: ``mount_dashboards(app)`` adds every area's pages, the live streams (``/live/...``), ``/static``
  and the lifespan of the LISTEN hub to the application (the composition root, ``steward/app.py``, calls it).
- ``web.py``: who is looking (``Viewer``), rendering, page errors, flash messages, form origin checks,
  scoped lookups and the snapshot streams, shared by the area modules.
- One module per area, each with its templates folder: ``login.py`` (``/login``, ``/logout``,
  ``/lang/{zh|en}``), ``rooms.py`` (``/``, ``/estates/{code}``, ``/rooms/{id}``, ``/devices/{id}``),
  ``ingest.py`` (``/ingest``), ``alarms.py`` (``/alarms``), ``tickets.py`` (``/tickets``, ``/live/tickets``),
  ``rounds.py`` (``/rooms/{id}/rounds``).
- ``live.py``: one ``LISTEN steward_ingest`` connection per process fanned out to the SSE streams.
- ``rooms_view.py``, ``ingest_view.py``, ``alarms_view.py``, ``tickets_view.py``, ``rounds_view.py``: what each
  area's pages show, as plain dicts shared by the first render and the live updates. The reads are the
  domains' (``facility.queries``/``live``, ``storage.ingest_reads``, ``alarms.queries``/``rounds_queries``,
  ``tickets.queries``), and so are the rules (``tickets.sla``, each ``policy.py``).
- ``i18n.py``: every UI string in both languages, labels for metrics and kinds, value/time/age formatting.
- ``static/``: the page script and stylesheet; ``vendor/echarts`` is Apache ECharts, served from here.

Who may see or do what is each domain's ``policy.py``; this package never imports ``api``.
"""

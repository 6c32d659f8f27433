"""What the JSON API and the pages both need from the web framework, once, below both (layer 4½).

- ``app.py``: the bare application (lifespan with the engine and sessionmaker, docs switches, error
  handlers, security middleware) that ``api`` and ``dashboards`` mount their routers on;
- ``deps.py``: the database session and current-user dependencies;
- ``replica.py``: ``ReadSessionDep``, the read replica's session for read-only routes, and when not to use it;
- ``cookies.py``: the session cookie's name and flags (set by the API's login and the login form alike);
- ``errors.py``: domain errors as JSON with their status; ``security.py``: origin check and headers.

``web`` imports domains (accounts for sessions and tokens) and never ``api`` or ``dashboards``.
"""

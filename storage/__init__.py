"""Tables, migrations and database helpers.

Importing the package registers the psycopg dumpers of ``storage.pg_arrays``: psycopg copies its global
adapters into each connection when it opens, so they must be in place before the first connection of
the process, whichever package opens it (they used to arrive only through an import of ingest.writer,
which the API application no longer makes now that the pages do not import ingest).
"""

from storage import pg_arrays as _pg_arrays  # noqa: F401  (registers the dumpers)

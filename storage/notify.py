"""The PostgreSQL NOTIFY channels the processes talk over, named once below everyone who uses them.

Ingest notifies ``INGEST_CHANNEL`` after each committed batch (ingest/writer.py); the ticket domain
notifies ``TICKETS_CHANNEL`` when alarms open or update tickets (tickets/from_alarms.py); billing notifies
``BILLING_CHANNEL`` when a charge, payment, refund, adjustment or hold of an estate commits (billing/events.py);
ingest notifies ``DEVICE_REPORTS_CHANNEL`` (payload: the device id) when a device refuses a command or a door
controller reports a whitelist state other than the stored one (ingest/writer.py), which wakes the worker's
controller sync (access/sync.py, worker/wake.py); the access domain notifies ``OUTBOX_CHANNEL`` when it queues
a whitelist command, which wakes the worker's outbox dispatcher at once; the dashboards' LISTEN hub
(dashboards/live.py) listens. Keeping the names here lets the pages listen without importing ingest (another
entry point) and lets the writers and the listener never disagree on a name.
"""

from __future__ import annotations

INGEST_CHANNEL = "steward_ingest"
TICKETS_CHANNEL = "steward_tickets"
BILLING_CHANNEL = "steward_billing"
DEVICE_REPORTS_CHANNEL = "steward_device_reports"
OUTBOX_CHANNEL = "steward_outbox"

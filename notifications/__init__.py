"""Notification channels and the delivery queue: log, e-mail (SMTP) and the WeCom (企业微信) group robot.

A layer-2 package beside `facility/` (DESIGN §2): the domains (tickets' escalations, billing's notices)
`service.enqueue` a delivery in their own transaction; the worker's `notifications` job sends it
(`service.dispatch_due`). Not to be confused with `storage/notify.py` (PostgreSQL NOTIFY channel names).
"""

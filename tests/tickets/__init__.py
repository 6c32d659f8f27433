"""Ticket domain tests; their factories (make_estate, make_rule, make_staff, insert_alarm) live in
tests/support/world.py."""

"""The billing tests' factories live in devkit/billing_factory.py (bench/billing_kill.py uses them too)."""

from devkit.billing_factory import Household, add_reading, flat_tariff, make_estate, unbalanced

__all__ = ["Household", "add_reading", "flat_tariff", "make_estate", "unbalanced"]

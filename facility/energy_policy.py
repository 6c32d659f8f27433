"""Who may read the energy and water reports (the page, its exports and the JSON API all ask here).

The engineering department runs the estate's energy management (consumption, 线损 / 漏损, vacant units that
use water or power), its supervisor and the project manager answer for it, read-only dashboard users watch
it: the equipment roles. Stewards, card and billing clerks have no part in it.
"""

from __future__ import annotations

from core.roles import Role

ENERGY_READERS = frozenset({Role.admin, Role.engineer, Role.supervisor, Role.manager, Role.viewer})


def may_read_energy(role: Role | str) -> bool:
    return Role(role) in ENERGY_READERS

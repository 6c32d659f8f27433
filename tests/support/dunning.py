"""Dunning objects in a test world's estates (the access matrix and schemathesis need a case and a document)."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from billing import dunning
from storage.models import Building, DunningCase, DunningDocument, Estate, Unit

# One unit in arrears; importing it again (the matrix's import row) changes nothing.
MATRIX_CSV = "unit,period,amount,late_fee\n1-1-101,2026-10,88.00,1.20\n"


def seed_dunning(engine: Engine, estate_code: str) -> tuple[int, int]:
    """A dunning case with its first document in the estate (creating unit 1-1-101 if the estate has none);
    returns (case id, document id). Safe to call again."""
    with Session(engine) as s, s.begin():
        estate = s.scalars(select(Estate).where(Estate.code == estate_code)).one()
        unit = s.scalar(
            select(Unit.id)
            .join(Building, Building.id == Unit.building_id)
            .where(Building.estate_id == estate.id, Unit.code == "1-1-101")
        )
        if unit is None:
            building = Building(estate_id=estate.id, code="1", name="1幢", floors=2)
            s.add(building)
            s.flush()
            s.add(Unit(building_id=building.id, code="1-1-101", floor=1, area_m2=Decimal("88.00")))
            s.flush()
        dunning.import_arrears(s, estate.id, MATRIX_CSV.encode(), actor="tests", filename="matrix.csv")
        dunning.advance(s, estate.id, dunning.local_today(estate))
        case_id, document_id = s.execute(
            select(DunningCase.id, DunningDocument.id)
            .join(DunningDocument, DunningDocument.case_id == DunningCase.id)
            .where(DunningCase.estate_id == estate.id)
            .order_by(DunningDocument.id)
            .limit(1)
        ).one()
        return int(case_id), int(document_id)

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from pydantic import BaseModel
from sqlalchemy import create_engine, literal, select

from cagette_runtime.rows import field_names, record


@dataclass(frozen=True)
class Member:
    member_id: int
    name: str
    role: str = "member"
    tags: tuple[str, ...] = field(default=())


class MemberOut(BaseModel):
    member_id: int
    name: str


def test_a_dataclass_is_built_from_the_columns_of_its_names_and_overrides() -> None:
    built = record(Member, {"member_id": 7, "name": "Ana", "unrelated": 1}, role="coordinator")
    assert built == Member(member_id=7, name="Ana", role="coordinator")


def test_a_field_missing_from_the_row_keeps_its_default_and_a_required_one_fails() -> None:
    assert record(Member, {"member_id": 1, "name": "Bo"}).role == "member"
    with pytest.raises(TypeError):
        record(Member, {"member_id": 1})


def test_a_pydantic_model_and_a_sqlalchemy_row() -> None:
    with create_engine("sqlite://").connect() as connection:
        row = connection.execute(select(literal(7).label("member_id"), literal("Cy").label("name"))).one()
    assert record(MemberOut, row) == MemberOut(member_id=7, name="Cy")
    assert field_names(MemberOut) == ("member_id", "name")


def test_a_class_that_is_not_a_record_is_refused() -> None:
    with pytest.raises(TypeError):
        field_names(int)

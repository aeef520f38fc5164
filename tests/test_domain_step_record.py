"""The decision record's model version (race/domain/step.py): stored as text of at most 100
characters without NUL, and no version at all when there is nothing to store."""

from __future__ import annotations

import pytest

from race.domain.agent import AgentAnswer
from race.domain.step import judge
from tests.test_domain_step import context


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        (None, None),
        ("", None),
        ("\x00", None),
        ("20230201T000000Z-h4", "20230201T000000Z-h4"),
        ("v\x001", "v1"),
        (42, "42"),
        ("x" * 150, "x" * 100),
        ("\x00" + "y" * 120, "y" * 100),
    ],
)
def test_the_model_version_is_stored_bounded_and_without_nul(given: object, stored: object) -> None:
    answer = AgentAnswer(reasoning="hold", model_version=given)  # type: ignore[arg-type]
    assert judge(context(), answer).decision.model_version == stored

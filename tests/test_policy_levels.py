"""Both ``off|prefer|require`` policies read a user's word the same way (one rule:
``pq_quic_plugin/policy_level.py``) and each names itself when it refuses one."""

from __future__ import annotations

import pytest

from pq_quic_plugin.auth_policy import AuthPolicy
from pq_quic_plugin.policy import Policy
from pq_quic_plugin.policy_level import PolicyLevel

LEVELS = [Policy, AuthPolicy]


@pytest.mark.parametrize("level", LEVELS, ids=lambda c: c.__name__)
@pytest.mark.parametrize(
    ("given", "word"),
    [(None, "prefer"), (True, "prefer"), (False, "off"), (" Require ", "require"), ("OFF", "off")],
)
def test_words_and_python_values_map_alike(
    level: type[PolicyLevel], given: str | bool | None, word: str
) -> None:
    parsed = level.parse(given)
    assert type(parsed) is level
    assert str(parsed) == parsed.value == word
    assert level.parse(parsed) is parsed


@pytest.mark.parametrize(
    ("level", "subject"), [(Policy, "post-quantum"), (AuthPolicy, "authentication")]
)
def test_an_unknown_word_names_the_policy_and_the_choices(
    level: type[PolicyLevel], subject: str
) -> None:
    with pytest.raises(ValueError, match=f"unknown {subject} policy 'always'; use one of: off"):
        level.parse("always")


def test_the_two_policies_stay_distinct_types() -> None:
    """A key-exchange level is not an authentication level, though both say ``require``."""
    assert Policy.REQUIRE == AuthPolicy.REQUIRE == "require"
    assert not isinstance(Policy.REQUIRE, AuthPolicy)
    assert AuthPolicy.parse("require") is AuthPolicy.REQUIRE

"""`linguachain-cli rewards explain`: what TARGET names (height, unit id, address or wallet name), the
unit title, and the fault of a slash (explainrewards' `evidence`)."""

from __future__ import annotations

from linguachain_cli.cmd_chain import explain_target, explained_subject, reason_text


def test_a_slash_names_its_fault_and_other_rewards_their_reason() -> None:
    fault = {"kind": "FALSE_SCORE", "validator": "ab" * 32, "height": 6}
    burn = {"reason": "slash_burn", "evidence": fault}
    assert reason_text(burn) == f"slash_burn (FALSE_SCORE by {'ab' * 8} at 6)"
    assert reason_text({"reason": "slash_reporter", "evidence": None}) == "slash_reporter"
    assert reason_text({"reason": "learning_contributor"}) == "learning_contributor"


def test_explain_takes_a_height_a_unit_id_or_resolves_an_address_or_wallet_name() -> None:
    def resolve(name: str) -> str:
        return f"rlc1-of-{name}"

    unit = "AB" * 32
    assert explain_target("17", resolve) == 17
    assert explain_target(unit, resolve) == unit.lower()  # not taken for a wallet name
    assert explain_target("dev0", resolve) == "rlc1-of-dev0"
    assert explain_target("ab" * 31, resolve) == f"rlc1-of-{'ab' * 31}"  # 62 hex: not a unit id


def test_a_unit_title_says_where_it_was_used_and_why_it_was_paid() -> None:
    data = {"unit_id": "cd" * 32, "kind": "data", "used_height": 5, "accepted_examples": 3}
    assert explained_subject(data) == f"data unit {'cd' * 32} (used at height 5, accepted_examples 3)"
    left = {"unit_id": "cd" * 32, "kind": "learning", "used_height": 0}
    assert explained_subject(left) == f"learning unit {'cd' * 32} (not used yet)"
    assert explained_subject({"address": "rlc1x", "total": 0}) == "rlc1x"
    assert explained_subject({"height": 7, "total": 0}) == "7"

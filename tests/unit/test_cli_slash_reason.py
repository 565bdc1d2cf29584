"""`linguachain-cli rewards explain` names the fault of a slash (explainrewards' `evidence`)."""

from __future__ import annotations

from linguachain_cli.cmd_chain import reason_text


def test_a_slash_names_its_fault_and_other_rewards_their_reason() -> None:
    fault = {"kind": "FALSE_SCORE", "validator": "ab" * 32, "height": 6}
    burn = {"reason": "slash_burn", "evidence": fault}
    assert reason_text(burn) == f"slash_burn (FALSE_SCORE by {'ab' * 8} at 6)"
    assert reason_text({"reason": "slash_reporter", "evidence": None}) == "slash_reporter"
    assert reason_text({"reason": "learning_contributor"}) == "learning_contributor"

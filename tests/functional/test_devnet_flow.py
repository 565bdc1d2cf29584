"""Functional: a real 3-validator devnet: heights and finality, a CLI transfer, staking a new
validator that then proposes, unstaking back after unbonding, SIGTERM and SIGKILL restarts.

Owns: the multi-node acceptance checks of the daemon/RPC/CLI issue. Must not: sleep (every wait is a
predicate with a deadline). Uses the CLI exactly as scripts would (`--json`, base units).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from linguachaind.devgenesis import dev_accounts
from tests.functional.framework import LinguaChainTestFramework, TestNode, wait_until

pytestmark = pytest.mark.functional


class DevnetTest(LinguaChainTestFramework):
    def set_test_params(self) -> None:
        self.num_nodes = 3

    def import_dev(self, node: TestNode, index: int, name: str) -> str:
        acc = dev_accounts(index + 1)[index]
        out = node.cli(
            "wallet", "import", "--name", name, "--secret-key-hex", acc["secret_key_hex"], env=self.cli_env()
        )
        assert out["address"] == acc["address"]
        return str(acc["address"])

    def check_height_and_finality(self) -> None:
        self.wait_for_height(4)
        wait_until(
            lambda: all(n.getblockchaininfo()["final_height"] >= 3 for n in self.nodes),
            timeout=60,
            what="final height 3 on every node",
        )
        self.sync_blocks()
        infos = [n.getblockchaininfo() for n in self.nodes]
        assert {i["network"] for i in infos} == {"devnet"}
        for i in infos:
            assert i["final_height"] <= i["height"]
            assert i["round"] == (i["height"] - 1) // 3
            assert i["synced"] in (True, False)
        # The final block is the same block everywhere.
        h = min(i["final_height"] for i in infos)
        assert len({n.getblockhash(h) for n in self.nodes}) == 1
        block = self.nodes[0].cli("chain", "block", str(h))
        assert block["hash"] == self.nodes[1].getblockhash(h)

    def check_send(self) -> None:
        node = self.nodes[0]
        self.import_dev(node, 0, "dev0")
        new = node.cli("wallet", "create", "--name", "fresh", env=self.cli_env())
        sent = node.cli(
            "wallet", "send", "--from", "dev0", new["address"], "2.5", "--wait", "60", env=self.cli_env()
        )
        assert sent["amount"] == 250_000_000
        assert isinstance(sent["height"], int)
        wait_until(
            lambda: all(n.getaccount(new["address"])["balance"] == 250_000_000 for n in self.nodes),
            timeout=60,
            what="the transfer on every node",
        )
        tx = self.nodes[2].gettransaction(sent["txid"])
        assert tx["status"] == "confirmed"
        assert tx["payload"]["to"] == new["address"]


class DevnetBasicTest(DevnetTest):
    def run_test(self) -> None:
        self.check_height_and_finality()
        self.check_send()


def test_three_nodes_finalize_and_transfer(tmp_path: Path) -> None:
    DevnetBasicTest().main(tmp_path)


class StakeTest(DevnetTest):
    def set_test_params(self) -> None:
        self.num_nodes = 4  # node3 has a fresh validator key that is not in the genesis
        self.num_validators = 3

    def run_test(self) -> None:
        self.wait_for_height(2)
        newcomer = self.nodes[3]
        key = newcomer.getnodeinfo()["validator_pubkey"]
        assert key not in {v["validator_pubkey"] for v in newcomer.getvalidators()}
        owner = self.import_dev(self.nodes[0], 1, "staker")
        before = self.nodes[0].getaccount(owner)
        amount = 3_000 * 10**8
        dep = self.nodes[0].cli(
            "stake",
            "deposit",
            "3000",
            "--from",
            "staker",
            "--validator",
            key,
            "--wait",
            "60",
            env=self.cli_env(),
        )
        assert dep["amount"] == amount
        wait_until(
            lambda: any(v["validator_pubkey"] == key and v["eligible"] for v in newcomer.getvalidators()),
            timeout=60,
            what="the new validator is eligible",
        )
        assert self.nodes[1].getaccount(owner)["staked"] >= amount

        def final_block_of_newcomer() -> bool:
            """A block it proposed is final (a backup's block can lose fork choice and be reorged
            away: its reward must be on the chain for the balance check below)."""
            final = newcomer.getblockchaininfo()["final_height"]
            if not any(
                v["validator_pubkey"] == key and v["last_proposed"] > 0 for v in newcomer.getvalidators()
            ):
                return False
            return any(newcomer.getblock(h)["proposer"] == key for h in range(max(1, final - 30), final + 1))

        wait_until(
            final_block_of_newcomer, timeout=120, what="a final block proposed by the staked validator"
        )

        # Withdraw: the coins come back after unbonding_blocks.
        wd = self.nodes[0].cli(
            "stake",
            "withdraw",
            "3000",
            "--from",
            "staker",
            "--validator",
            key,
            "--wait",
            "60",
            env=self.cli_env(),
        )
        acct = self.nodes[0].getaccount(owner)
        assert acct["staked"] == 0
        assert acct["unbonding"] == amount
        info = self.nodes[0].getstakinginfo(owner)
        release = info["account"]["stakes"][0]["unbonding"][0]["release_height"]
        assert release > wd["height"]
        self.wait_for_height(release + 1)
        wait_until(
            lambda: self.nodes[2].getaccount(owner)["unbonding"] == 0, timeout=60, what="unbonding released"
        )
        after = self.nodes[2].getaccount(owner)
        fees = dep["fee"] + wd["fee"]
        # The owner gets its validator's block rewards (PROTOCOL §5.1): every coin is accounted for.
        records = self.nodes[2].explainrewards(owner)["rewards"]
        assert any(r["reason"] == "unbonded" and r["amount"] == amount for r in records)
        rewards = sum(r["amount"] for r in records if r["reason"] != "unbonded")
        assert rewards > 0
        assert after["balance"] == before["balance"] - fees + rewards


def test_stake_deposit_proposes_and_withdraw_returns(tmp_path: Path) -> None:
    StakeTest().main(tmp_path)


class RestartTest(DevnetTest):
    def run_test(self) -> None:
        self.wait_for_height(3)
        self.sync_blocks()
        for node, how in ((self.nodes[1], "sigterm"), (self.nodes[2], "sigkill")):
            height = node.getblockchaininfo()["height"]
            if how == "sigterm":
                assert node.stop_node() == 0
            else:
                node.kill()
            # The others keep going (2 of 3 validators hold 2/3 of the stake).
            others = [n for n in self.nodes if n is not node]
            self.wait_for_height(height + 2, others)
            node.start()
            resumed = node.getblockchaininfo()["height"]
            assert resumed >= height  # resumed from its store, not from genesis
            self.connect_nodes(self.nodes.index(node), 0)
            self.sync_blocks()
        self.wait_for_height(self.nodes[0].getblockchaininfo()["height"] + 2)
        self.sync_blocks()
        log = (self.nodes[1].datadir / "debug.log").read_text()
        assert "EVENT store_closed name=chain" in log


def test_sigterm_and_sigkill_restart_and_catch_up(tmp_path: Path) -> None:
    RestartTest().main(tmp_path)

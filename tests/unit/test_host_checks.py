"""Host check parsers: a FORWARD chain with policy DROP (as Docker leaves it) that blocks VMs' traffic."""

from __future__ import annotations

import json
from typing import Any

from kvmhub.services.host.checks import iptables_forward_drop, nft_forward_drops

DOCKER = """\
-P INPUT ACCEPT
-P FORWARD DROP
-P OUTPUT ACCEPT
-N DOCKER
-N DOCKER-ISOLATION-STAGE-1
-N DOCKER-USER
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A DOCKER-USER -j RETURN
"""


def test_docker_drop_policy_is_reported_with_a_docker_user_fix() -> None:
    fix = iptables_forward_drop(DOCKER)
    assert fix is not None
    assert "iptables -I DOCKER-USER -i virbr+ -j ACCEPT" in fix
    assert "-o virbr+ -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT" in fix


def test_drop_policy_without_docker_names_the_forward_chain() -> None:
    fix = iptables_forward_drop("-P INPUT ACCEPT\n-P FORWARD DROP\n-P OUTPUT ACCEPT\n")
    assert fix is not None and "iptables -I FORWARD -i virbr+ -j ACCEPT" in fix


def test_accept_policy_is_fine() -> None:
    assert iptables_forward_drop("-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n") is None


def test_a_virbr_accept_rule_in_docker_user_lets_vms_through() -> None:
    rules = DOCKER.replace("-A DOCKER-USER -j RETURN", "-A DOCKER-USER -i virbr+ -j ACCEPT\n-A DOCKER-USER -j RETURN")
    assert iptables_forward_drop(rules) is None


def test_libvirts_own_iptables_chains_let_vms_through() -> None:
    rules = DOCKER + "-N LIBVIRT_FWO\n-N LIBVIRT_FWI\n-A FORWARD -j LIBVIRT_FWI\n-A FORWARD -j LIBVIRT_FWO\n"
    assert iptables_forward_drop(rules) is None


def _ruleset(*objects: dict[str, Any]) -> str:
    return json.dumps({"nftables": [{"metainfo": {"json_schema_version": 1}}, *objects]})


def _forward_chain(family: str, table: str, name: str, policy: str) -> dict[str, Any]:
    return {"chain": {"family": family, "table": table, "name": name, "type": "filter", "hook": "forward",
                      "prio": 0, "policy": policy}}


def _virbr_accept(family: str, table: str, chain: str) -> dict[str, Any]:
    match = {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "virbr*"}}
    return {"rule": {"family": family, "table": table, "chain": chain, "expr": [match, {"accept": None}]}}


def test_nft_forward_drop_without_a_libvirt_rule_is_reported() -> None:
    found = nft_forward_drops(_ruleset(_forward_chain("inet", "fw", "forward", "drop")))
    assert len(found) == 1
    where, fix = found[0]
    assert where == "nft chain inet fw forward"
    assert 'nft insert rule inet fw forward iifname "virbr*" accept' in fix


def test_nft_drop_with_a_virbr_accept_in_its_table_is_fine() -> None:
    ruleset = _ruleset(_forward_chain("inet", "fw", "forward", "drop"), _virbr_accept("inet", "fw", "forward"))
    assert nft_forward_drops(ruleset) == []


def test_libvirts_accepting_table_does_not_outvote_another_tables_drop() -> None:
    ruleset = _ruleset(
        _forward_chain("ip", "libvirt_network", "forward", "accept"),
        _virbr_accept("ip", "libvirt_network", "forward"),
        _forward_chain("ip6", "filter", "FORWARD", "drop"),
    )
    assert [where for where, _ in nft_forward_drops(ruleset)] == ["nft chain ip6 filter FORWARD"]


def test_a_chain_already_reported_through_iptables_is_skipped() -> None:
    ruleset = _ruleset(_forward_chain("ip", "filter", "FORWARD", "drop"))
    assert nft_forward_drops(ruleset, skip={("ip", "filter", "FORWARD")}) == []


def test_unreadable_nft_output_reports_nothing() -> None:
    assert nft_forward_drops("not json") == []
    assert nft_forward_drops("[]") == []

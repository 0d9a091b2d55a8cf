from __future__ import annotations

from dockyard.identity.call_ids import CallScope, mint_call_id, resolve_call_id
from dockyard.identity.ownership import Owner

SCOPE = CallScope("a" * 32, "default", "helper", Owner("user:alice", "end-user@example.com"))


def test_a_call_id_says_whose_call_it_is_and_differs_per_request() -> None:
    first, second = mint_call_id("secret", SCOPE), mint_call_id("secret", SCOPE)
    assert first != second
    assert resolve_call_id("secret", first) == resolve_call_id("secret", second) == SCOPE
    undelegated = CallScope("b" * 32, "default", "helper", Owner("local-developer"))
    assert resolve_call_id("secret", mint_call_id("secret", undelegated)) == undelegated


def test_only_ids_this_dockyard_signed_resolve() -> None:
    genuine = mint_call_id("secret", SCOPE)
    payload, mac = genuine.rsplit(".", 1)
    forged = mint_call_id("secret", CallScope("a" * 32, "default", "helper", Owner("user:bob")))
    assert resolve_call_id("another-secret", genuine) is None
    assert resolve_call_id("secret", f"{forged.rsplit('.', 1)[0]}.{mac}") is None  # bob's payload, alice's MAC
    assert resolve_call_id("secret", f"{payload}.{'0' * len(mac)}") is None
    for junk in ("", "0123456789abcdef0123456789abcdef", "dyc1.", "dyc1..", f"{payload}"):
        assert resolve_call_id("secret", junk) is None

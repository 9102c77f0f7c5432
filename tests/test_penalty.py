"""The auth penalty (``saslkit.penalty``): Dovecot's doubling delay, per IP and per user, on a fake clock."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from servers import saslkit_run

from saslkit.errors import UsageError
from saslkit.penalty import AuthPenalty, MemoryPenaltyStore, address_key, parse_auth_penalty


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def penalty(clock: FakeClock, **store: float) -> AuthPenalty:
    return AuthPenalty(2.0, 15.0, MemoryPenaltyStore(clock=clock, **store))  # type: ignore[arg-type]


def test_delay_doubles_from_base_to_cap_then_resets_on_success() -> None:
    pen = penalty(FakeClock())
    delays = [pen.settle("192.0.2.1", "alice", False) for _ in range(6)]
    assert delays == [0.0, 2.0, 4.0, 8.0, 15.0, 15.0]  # Dovecot: 2, 4, 8, then the 15 s cap
    assert pen.settle("192.0.2.1", "alice", True) == 15.0  # the success reply of a penalized attempt waits too
    assert pen.delay("192.0.2.1", "alice") == 0.0


def test_per_user_penalty_follows_the_user_across_addresses() -> None:
    pen = penalty(FakeClock())
    for i in range(3):
        pen.failed(f"198.51.100.{i}", "alice")
    assert pen.delay("203.0.113.9", "alice") == 8.0  # a fresh address, same user
    assert pen.delay("203.0.113.9", "bob") == 0.0
    assert pen.delay("203.0.113.9", None) == 0.0
    assert pen.delay("198.51.100.0", None) == 2.0  # each address failed once


def test_per_ip_penalty_covers_every_user_and_unknown_names() -> None:
    pen = penalty(FakeClock())
    for name in ("a", "b", None, "d"):
        pen.failed("192.0.2.7", name)
    assert pen.delay("192.0.2.7", "zed") == 15.0  # four failures: 2, 4, 8, then the cap
    assert pen.delay("192.0.2.8", "zed") == 0.0


def test_ipv6_addresses_share_their_48_bit_prefix_and_mapped_v4_is_v4() -> None:
    pen = penalty(FakeClock())
    pen.failed("2001:db8:1:2::1", None)
    pen.failed("2001:db8:1:ffff::2", None)
    assert pen.delay("2001:db8:1:1234::99", None) == 2.0 * 2
    assert pen.delay("2001:db8:2::1", None) == 0.0
    pen.failed("::ffff:192.0.2.1", None)
    assert pen.delay("192.0.2.1", None) == 2.0


def test_entries_expire_on_the_injected_clock() -> None:
    clock = FakeClock()
    pen = penalty(clock, expire=60.0)
    pen.failed("192.0.2.1", "alice")
    pen.failed("192.0.2.1", "alice")
    clock.now += 59
    assert pen.delay("192.0.2.1", "alice") == 4.0
    pen.failed("192.0.2.1", "alice")  # the expiry counts from the last failure
    clock.now += 59
    assert pen.delay("192.0.2.1", "alice") == 8.0
    clock.now += 1
    assert pen.delay("192.0.2.1", "alice") == 0.0
    assert pen.settle("192.0.2.1", "alice", False) == 0.0  # starts over at one failure
    assert pen.delay("192.0.2.1", "alice") == 2.0


def test_memory_is_bounded_least_recently_failed_first() -> None:
    store = MemoryPenaltyStore(max_entries=100, clock=FakeClock())
    for i in range(10_000):
        store.record(f"user:{i}")
    assert len(store) == 100
    assert store.get("user:9999") == 1 and store.get("user:0") == 0
    store.record("user:9900")  # refreshed: survives the next 99 new keys
    for i in range(99):
        store.record(f"new:{i}")
    assert store.get("user:9900") == 2 and store.get("user:9901") == 0


def test_store_is_thread_safe() -> None:
    store = MemoryPenaltyStore(max_entries=50)

    def hammer(n: int) -> None:
        for i in range(2000):
            store.record(f"k{(i * 7 + n) % 80}")
            store.get(f"k{i % 80}")
            if i % 13 == 0:
                store.reset(f"k{i % 80}")

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store) <= 50


@pytest.mark.parametrize(("spec", "expected"), [("2:15", (2.0, 15.0)), ("0.2:0.8", (0.2, 0.8)), ("OFF", None)])
def test_parse(spec: str, expected: tuple[float, float] | None) -> None:
    parsed = parse_auth_penalty(spec)
    assert (None if parsed is None else (parsed.base, parsed.cap)) == expected


@pytest.mark.parametrize("spec", ["", "2", "15:2", "0:1", "-1:2", "a:b", "nan:nan", "1:inf", "2:15:3"])
def test_parse_refuses_nonsense(spec: str) -> None:
    with pytest.raises(UsageError):
        parse_auth_penalty(spec)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=40) | st.from_regex(r"-?[0-9.e+-]{0,8}:-?[0-9.e+-]{0,8}", fullmatch=True))
def test_parse_only_raises_usage_error(spec: str) -> None:
    try:
        parsed = parse_auth_penalty(spec)
    except UsageError:
        return
    assert parsed is None or 0 < parsed.base <= parsed.cap < float("inf")


def test_serve_refuses_a_bad_penalty_before_touching_anything(tmp_path: Path) -> None:
    result = saslkit_run("serve", "smtp", "--db", str(tmp_path / "u.db"), "--auth-penalty", "15:2")
    assert result.returncode == 2 and "auth penalty is BASE:CAP" in result.stderr
    assert not list(tmp_path.iterdir())  # no key ring, database or certificate made
    result = saslkit_run("serve", "imap", "--db", str(tmp_path / "u.db"), "--max-connections", "0")
    assert result.returncode == 2 and "positive whole number" in result.stderr


def test_address_key_groups_ipv6_networks_and_unmaps_ipv4() -> None:
    """The per-IP connection cap counts an IPv6 client by its /64 (CLIENT_IPV6_PREFIX), the penalty by /48."""
    from saslkit.net.server import CLIENT_IPV6_PREFIX

    assert address_key("192.0.2.7") == address_key("::ffff:192.0.2.7") == "ip:192.0.2.7"
    assert address_key("2001:db8:1:2::a", CLIENT_IPV6_PREFIX) == address_key("2001:db8:1:2:ffff::b", CLIENT_IPV6_PREFIX)
    assert address_key("2001:db8:1:2::a", CLIENT_IPV6_PREFIX) != address_key("2001:db8:1:3::a", CLIENT_IPV6_PREFIX)
    assert address_key("2001:db8:1:2::a") == address_key("2001:db8:1:3::a") == "ip:2001:db8:1::/48"
    assert address_key("fe80::1%eth0", CLIENT_IPV6_PREFIX) == "ip:fe80::/64"
    assert address_key("not an address") == "ip:not an address"

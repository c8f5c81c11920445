"""storage/loginflows.py: Nextcloud Login Flow v2 state on SQLite and MariaDB: secrets kept
only as digests, a grant only of a live pending flow, the app password handed out once, and
expiry by the clock."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from storage import clock, loginflows
from storage.errors import RateLimited
from storage.models import LoginFlow


def start(drive, agent="Nextcloud-android/3.30", ttl=60, address="192.0.2.1", most=loginflows.MAX_PER_ADDRESS):
    return drive.tx(lambda s: loginflows.start(s, agent, address, ttl, most))


def pending(drive, login_id):
    return drive.tx(lambda s: loginflows.pending_agent(s, login_id))


def grant(drive, login_id, name="a@example.com", password="bd_secret"):
    return drive.tx(lambda s: loginflows.grant(s, login_id, name, password))


def take(drive, token):
    return drive.tx(lambda s: loginflows.take(s, token))


def test_secrets_are_stored_as_digests_only(drive):
    flow = start(drive)
    with drive.sm() as s:
        row = s.execute(sa.select(LoginFlow)).scalar_one()
    assert flow.login_id != flow.poll_token
    assert row.login_hash == loginflows.digest(flow.login_id)
    assert row.poll_hash == loginflows.digest(flow.poll_token)
    assert flow.login_id.encode() not in row.login_hash and row.app_password is None


def test_flow_waits_then_gives_the_app_password_once(drive):
    flow = start(drive)
    assert pending(drive, flow.login_id) == "Nextcloud-android/3.30"
    assert take(drive, flow.poll_token) is None  # not signed in yet
    assert take(drive, flow.login_id) is None  # the browser's secret does not poll
    assert grant(drive, flow.poll_token) is False  # nor does the app's secret grant
    assert grant(drive, flow.login_id) is True
    assert pending(drive, flow.login_id) is None  # the page is done with
    assert grant(drive, flow.login_id, password="bd_other") is False  # granted once
    got = take(drive, flow.poll_token)
    assert got == loginflows.Granted("a@example.com", "bd_secret")
    assert take(drive, flow.poll_token) is None
    with drive.sm() as s:
        assert s.execute(sa.select(sa.func.count()).select_from(LoginFlow)).scalar_one() == 0


def test_flows_are_independent(drive):
    one, two = start(drive, "one"), start(drive, "two")
    assert grant(drive, one.login_id, password="bd_one")
    assert take(drive, two.poll_token) is None
    assert pending(drive, two.login_id) == "two"
    assert take(drive, one.poll_token).app_password == "bd_one"


def test_expired_flows_are_gone_and_purged(drive):
    waiting, granted = start(drive, ttl=60), start(drive, ttl=60)
    assert grant(drive, granted.login_id)
    clock.advance(61)
    assert pending(drive, waiting.login_id) is None
    assert grant(drive, waiting.login_id) is False
    assert take(drive, granted.poll_token) is None
    fresh = start(drive, ttl=60)  # and it clears the expired rows
    with drive.sm() as s:
        assert s.execute(sa.select(LoginFlow.poll_hash)).scalars().all() == [loginflows.digest(fresh.poll_token)]


def test_user_agent_is_cut_to_its_column(drive):
    flow = start(drive, "x" * 1000)
    assert pending(drive, flow.login_id) == "x" * loginflows.USER_AGENT_MAX


def test_one_address_holds_a_bounded_number_of_live_flows(drive):
    for _ in range(3):
        start(drive, ttl=60, most=3)
    with pytest.raises(RateLimited) as err:
        start(drive, ttl=60, most=3)
    assert 1 <= err.value.details["retry_after"] <= 60
    start(drive, ttl=60, most=3, address="192.0.2.2")  # another address is not held back
    clock.advance(61)
    start(drive, ttl=60, most=3)  # the expired ones no longer count

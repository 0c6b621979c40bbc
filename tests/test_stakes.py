"""numerlab.tournament.stakes (Atomic Blockchain Staking, "v3") against the fake Numerai:
real numerapi 3.1.1 v3 calls over HTTP; the fake answers as a migrated tournament does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from fakes.abs import NO_SCOPE, V2_DISABLED, WALLET
from fakes.numerai_server import PUBLIC_ID, SECRET_KEY
from omegaconf import OmegaConf

from numerlab.errors import NumerlabError
from numerlab.tournament import (
    AbsStakes,
    TournamentClient,
    nmr_text,
    staking_system,
    wallet_address,
)

pytest_plugins = ["fakes.numerai_server"]

CONF = Path(__file__).resolve().parents[1] / "conf" / "tournament" / "default.yaml"
ENV = {"NUMERAI_PUBLIC_ID": PUBLIC_ID, "NUMERAI_SECRET_KEY": SECRET_KEY}


def client(fake) -> TournamentClient:
    cfg = OmegaConf.to_container(OmegaConf.load(CONF))
    cfg.update({"api_url": fake.url, "timeout_s": 2, "backoff_s": 0.001, "max_attempts": 2})
    return TournamentClient.from_config(cfg, environ=ENV, sleep=lambda s: None)


def test_the_default_tournament_stakes_on_chain_with_no_wallet_set():
    cfg = OmegaConf.to_container(OmegaConf.load(CONF))
    assert staking_system(cfg) == "abs" and wallet_address(cfg) is None
    assert staking_system({"staking": "v2"}) == "v2"
    with pytest.raises(NumerlabError, match=r"^tournament.staking='v3' is unknown \(allowed: "
                                            r"abs, v2\)$"):
        staking_system({"staking": "v3"})
    with pytest.raises(NumerlabError, match=r"^tournament.wallet_address='0x12' must be an "
                                            r"Ethereum address"):
        wallet_address({"wallet_address": "0x12"})


def test_positions_rounds_and_claims_of_a_model(fake_numerai):
    fake_numerai.add_model("my_model")
    fake_numerai.open_round(1005)
    for number, stake in ((1001, "5"), (1002, "6"), (1004, "7.5")):
        fake_numerai.abs.add_position("my_model", number, stake)
    fake_numerai.abs.resolve(1001, {"my_model": "0.4"})
    fake_numerai.abs.resolve(1002, {"my_model": "-1.5"}, resolved_ago=timedelta(days=9))
    stakes = AbsStakes(client(fake_numerai))

    positions = stakes.positions("my_model")
    assert [(p.round, p.stake, p.resolved) for p in positions] == [
        (1004, 7.5, False), (1002, 6.0, True), (1001, 5.0, True)]
    chain = stakes.chain_round(1004)
    assert (chain.number, chain.state, chain.resolved) == (1004, "closed", False)
    assert chain.resolve_time > chain.close_time > chain.open_time
    assert stakes.chain_round(1005).state == "open"
    # round 1002 resolved 9 days ago: past the 7-day grace, Numerai finalized it
    [claim] = stakes.claims("my_model", WALLET, positions)
    assert (claim.round, claim.stake, claim.payout, claim.burn) == (1001, 5.0, 0.4, 0.0)
    assert claim.claimable == pytest.approx(5.4)
    asked = [r.variables for r in fake_numerai.state.requests if r.operation == "v3StakeClaim"]
    assert asked == [{"roundId": "1001", "modelId": fake_numerai.state.models["my_model"].id,
                      "staker": WALLET}]


def test_an_authorization_for_the_newest_submission(fake_numerai):
    fake_numerai.add_model("my_model")
    fake_numerai.open_round(1005)
    now = datetime.now(UTC)
    fake_numerai.abs.submit("my_model", 1004, inserted_at=now - timedelta(days=1))
    newest = fake_numerai.abs.submit("my_model", inserted_at=now)
    stakes = AbsStakes(client(fake_numerai))
    assert stakes.latest_submission("my_model") == newest.id
    auth = stakes.authorize(newest.id, WALLET, 12.123456789)
    assert (auth["maxAmount"], auth["roundId"], auth["submissionId"]) == (
        "12.12345678", "1005", newest.id)  # cut to 8 decimals, never rounded up
    assert auth["stakingAddress"] == stakes.contract().address
    [request] = [r for r in fake_numerai.state.requests if r.operation == "v3StakeAuth"]
    assert request.variables == {"submissionId": newest.id, "staker": WALLET,
                                 "maxAmount": "12.12345678"}
    assert request.headers["Authorization"] == f"Token {PUBLIC_ID}${SECRET_KEY}"


def test_authorizations_numerai_refuses_are_one_line(fake_numerai):
    fake_numerai.add_model("my_model")
    fake_numerai.add_model("quiet_model")
    fake_numerai.open_round(1005)
    old = fake_numerai.abs.submit("my_model", 1004)
    stakes = AbsStakes(client(fake_numerai))
    with pytest.raises(NumerlabError, match="^Numerai API v3StakeAuth: Staking is closed"):
        stakes.authorize(old.id, WALLET, 1)
    with pytest.raises(NumerlabError, match="model 'quiet_model' has no submission to stake"):
        stakes.latest_submission("quiet_model")
    with pytest.raises(NumerlabError, match="needs max_amount > 0 NMR"):
        stakes.authorize(old.id, WALLET, 0.000000001)  # 0 once cut to 8 decimals
    assert fake_numerai.abs.authorizations == []


def test_an_authorization_allowing_more_than_asked_is_refused(fake_numerai):
    fake_numerai.add_model("my_model")
    fake_numerai.open_round(1005)
    submission = fake_numerai.abs.submit("my_model")
    answer = ('{"data": {"v3StakeAuth": {"maxAmount": "50", "roundId": "1005", '
              '"submissionId": "x", "staker": "' + WALLET + '"}}}')
    fake_numerai.answer_next(answer, operation="v3StakeAuth")
    with pytest.raises(NumerlabError, match="allows '50' NMR, not the 5 asked"):
        AbsStakes(client(fake_numerai)).authorize(submission.id, WALLET, 5)


def test_a_key_without_the_web3_staking_scope_says_so(fake_numerai):
    fake_numerai.abs.state.web3_scope = False
    with pytest.raises(NumerlabError, match=NO_SCOPE):
        AbsStakes(client(fake_numerai)).contract()


def test_a_migrated_tournament_refuses_v2_stake_mutations(fake_numerai):
    fake_numerai.add_model("my_model", stake=10)
    api = client(fake_numerai)
    with pytest.raises(NumerlabError, match="legacy V2 staking mutations for that tournament "
                                            "are disabled"):
        api.change_stake("my_model", 1)
    assert fake_numerai.state.stake_changes == []
    assert V2_DISABLED.startswith("The legacy V2 staking mutations")
    fake_numerai.abs.migrated = False  # the switch: a tournament not migrated yet
    assert api.change_stake("my_model", 1).action == "increase"


@pytest.mark.parametrize(("amount", "text"), [
    (1.0, "1"), (0.1 + 0.2, "0.3"), (12.999999999, "12.99999999"), (Decimal("5.5"), "5.5"),
    (1e-9, "0")])
def test_nmr_amounts_are_cut_to_eight_decimals(amount, text):
    assert nmr_text(amount) == text

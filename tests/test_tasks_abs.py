"""task=stake and task=status under Atomic Blockchain Staking, as a user runs them: real
`python run.py`, numerapi's v3 calls over HTTP to the fake Numerai (migrated, as Numerai's
tournaments are)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import run_cli
from fakes.abs import WALLET
from fakes.numerai_server import PUBLIC_ID, SECRET_KEY

from numerlab.errors import NumerlabError
from numerlab.staking import Caps, RoundStakeProposal
from numerlab.tasks.stake import check_round_within_caps

KEYS = {"NUMERAI_PUBLIC_ID": PUBLIC_ID, "NUMERAI_SECRET_KEY": SECRET_KEY}
V2_OPERATIONS = ("v2ChangeStake", "releaseStake")

pytestmark = pytest.mark.slow  # python run.py as a user runs it, against the fake


def api(fake) -> list[str]:
    return [f"tournament.api_url={fake.url}", "tournament.backoff_s=0.01",
            "tournament.timeout_s=10"]


def ok(proc) -> None:
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])


def error_line(proc) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    [line] = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    return line


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture
def scored_run(tmp_path) -> Path:
    """A finished run as far as task=stake needs one: its per_era.parquet."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    rng = np.random.default_rng(0)
    pl.DataFrame({"era": [f"{i:04d}" for i in range(575, 605)],
                  "corr": rng.normal(0.02, 0.02, 30), "mmc": rng.normal(0.0, 0.01, 30)}
                 ).write_parquet(run_dir / "per_era.parquet")
    (run_dir / "metrics.json").write_text("{}")  # finished
    return run_dir


@pytest.fixture
def staked(fake_numerai):
    """my_model with positions in rounds 1001 (resolved, +0.4 NMR), 1003 and 1004 (open),
    and a submission in the open round 1005."""
    fake_numerai.add_model("my_model")
    fake_numerai.open_round(1005)
    for number, stake in ((1001, "5"), (1003, "20"), (1004, "25")):
        fake_numerai.abs.add_position("my_model", number, stake)
    fake_numerai.abs.resolve(1001, {"my_model": "0.4"})
    fake_numerai.abs.submit("my_model")
    return fake_numerai


def stake_args(run_dir: Path, fake, *extra: str) -> list[str]:
    return ["task=stake", "staking=fixed", "staking.stake=80", f"run_dir={run_dir}",
            "tournament.model_name=my_model", f"history.path={run_dir.parent / 'h.sqlite'}",
            *api(fake), *extra]


def test_stake_plans_against_the_positions_and_sends_nothing(staked, tmp_path, scored_run):
    job = tmp_path / "job"
    proc = run_cli(stake_args(scored_run, staked, f"hydra.run.dir={job}"), env=KEYS)
    ok(proc)
    record = read_json(job / "stake.json")
    # the per-round stake now is the newest open position's (25); 80 wished, +50 at most
    assert (record["staking"], record["mode"], record["current"], record["per_round_stake"],
            record["change"], record["capped_by"]) == ("abs", "fixed", 25, 75, 50,
                                                       "max_change")
    assert (record["locked"], record["locked_after"]) == (45, 120)
    assert [(p["round"], p["stake"], p["state"]) for p in record["positions"]] == [
        (1004, 25, "closed"), (1003, 20, "closed")]
    assert record["claims"] is None and record["claimable"] is None  # no wallet address
    assert (record["wallet"], record["wallet_note"]) == (None, "wallet unknown")
    assert "capped by min_wallet" not in record["reason"]
    assert not record["executed"] and record["authorization"] is None
    assert "numerlab holds no private key and signs nothing" in record["signing"]
    assert not set(V2_OPERATIONS) & set(staked.operations())
    assert {"v3StakeRound", "v2RoundModelPerformances"} <= set(staked.operations())
    assert staked.abs.authorizations == []
    assert "wallet unknown" in proc.stdout


def test_stake_asks_for_the_authorization_within_the_caps(staked, tmp_path, scored_run):
    job = tmp_path / "job"
    ok(run_cli(stake_args(scored_run, staked, "tournament.execute_stake=true",
                          f"tournament.wallet_address={WALLET}", "staking/mode=compound",
                          "staking.caps.max_locked=100", f"hydra.run.dir={job}"), env=KEYS))
    record = read_json(job / "stake.json")
    # 80 wished, 75 after max_change (+50 on 25); 45 NMR locked under max_locked 100
    # leaves room for 55
    assert (record["per_round_stake"], record["capped_by"], record["mode"]) == (
        55, "max_locked", "compound")
    [auth] = staked.abs.authorizations
    assert record["executed"] and record["authorization"]["maxAmount"] == "55" == \
        auth["maxAmount"]
    assert record["authorization"]["contract"] == staked.abs.state.contract
    assert record["authorization"]["submissionId"] == staked.state.submissions[-1].id
    assert record["authorization"]["signature"] == auth["signature"]
    [claim] = record["claims"]  # round 1001 resolved a day ago: 5 + 0.4 claimable
    assert (claim["round"], claim["claimable"]) == (1001, pytest.approx(5.4))
    assert not set(V2_OPERATIONS) & set(staked.operations())


@pytest.mark.parametrize(("extra", "needle"), [
    ([], "needs tournament.wallet_address"),
    ([f"tournament.wallet_address={WALLET}", "staking.caps.min_wallet=5"],
     "wallet unknown, so staking.caps.min_wallet 5 cannot be kept"),
    (["tournament.wallet_address=0xnope"], "tournament.wallet_address='0xnope' must be an "
                                           "Ethereum address"),
    ([f"tournament.wallet_address={WALLET}", "tournament.staking=v3"],
     "tournament.staking='v3' is unknown (allowed: abs, v2)"),
])
def test_stake_authorization_refused_is_one_line(staked, tmp_path, scored_run, extra, needle):
    job = tmp_path / "job"
    line = error_line(run_cli(stake_args(scored_run, staked, "tournament.execute_stake=true",
                                         *extra, f"hydra.run.dir={job}"), env=KEYS))
    assert needle in line
    assert staked.abs.authorizations == [] and not (job / "stake.json").exists()


def test_no_position_is_asked_for_a_zero_stake(staked, tmp_path, scored_run):
    job = tmp_path / "job"
    ok(run_cli(stake_args(scored_run, staked, "staking.stake=0", "staking/caps=none",
                          "tournament.execute_stake=true", f"tournament.wallet_address={WALLET}",
                          f"hydra.run.dir={job}"), env=KEYS))
    record = read_json(job / "stake.json")
    assert (record["per_round_stake"], record["executed"]) == (0, False)
    assert record["action"].startswith("no position to open")
    assert staked.abs.authorizations == []


def test_the_v2_path_against_a_migrated_tournament_is_one_line(fake_numerai, tmp_path,
                                                               scored_run):
    fake_numerai.add_model("my_model", stake=10)
    job = tmp_path / "job"
    line = error_line(run_cli(stake_args(scored_run, fake_numerai, "tournament.staking=v2",
                                         "tournament.execute_stake=true",
                                         f"hydra.run.dir={job}"), env=KEYS))
    assert "legacy V2 staking mutations for that tournament are disabled" in line
    assert "drop tournament.staking=v2" in line
    assert fake_numerai.state.stake_changes == []


def test_an_unknown_wallet_is_said_and_caps_nothing_under_v2(fake_numerai, tmp_path,
                                                             scored_run):
    """Numerai reports no balance: the plan says 'wallet unknown', not 'capped by
    min_wallet' (min_wallet is 0)."""
    fake_numerai.abs.migrated = False
    fake_numerai.add_model("my_model", stake=10)
    fake_numerai.state.wallet_nmr = None
    job = tmp_path / "job"
    proc = run_cli(stake_args(scored_run, fake_numerai, "tournament.staking=v2",
                              f"hydra.run.dir={job}"), env=KEYS)
    ok(proc)
    record = read_json(job / "stake.json")
    assert (record["current"], record["target"], record["capped_by"]) == (10, 60, "max_change")
    assert (record["wallet"], record["wallet_note"]) == (None, "wallet unknown")
    assert record["reason"].endswith("wallet unknown")
    assert "wallet unknown" in proc.stdout and "min_wallet" not in proc.stdout


def test_status_shows_positions_and_claims(staked, tmp_path):
    staked.add_model("quiet_model")
    job = tmp_path / "job"
    proc = run_cli(["task=status", *api(staked), f"tournament.wallet_address={WALLET}",
                    f"hydra.run.dir={job}"], env=KEYS)
    ok(proc)
    status = read_json(job / "status.json")
    assert (status["staking"], status["staker"]) == ("abs", WALLET)
    mine = status["models"]["my_model"]
    assert (mine["per_round_stake"], mine["locked"], mine["claimable"]) == (
        25, 45, pytest.approx(5.4))
    assert [(p["round"], p["state"]) for p in mine["positions"]] == [
        (1004, "closed"), (1003, "closed")]
    quiet = status["models"]["quiet_model"]
    assert (quiet["positions"], quiet["locked"], quiet["claimable"]) == ([], 0, 0)
    assert "Open positions of my_model" in proc.stdout and "5.4000" in proc.stdout
    assert not set(V2_OPERATIONS) & set(staked.operations())


# --- the caps, once more before an authorization ----------------------------------------

def round_proposal(current: float, stake: float, locked: float = 0.0,
                   wallet: float | None = None) -> RoundStakeProposal:
    return RoundStakeProposal(current=current, stake=stake, change=stake - current,
                              mode="fixed", locked=locked, wallet=wallet, capped_by=None,
                              reason="test", wish=stake)


@pytest.mark.parametrize(("proposal", "needle"), [
    (round_proposal(10, 70), "increase 60 > staking.caps.max_change 50"),
    (round_proposal(990, 1001), "per-round stake 1001 > staking.caps.max_stake 1000"),
    (round_proposal(10, 40, locked=4980), "4980 NMR locked + 40 > staking.caps.max_locked"),
    (round_proposal(10, 40, wallet=44), "leaves less than staking.caps.min_wallet 5"),
    (round_proposal(10, 40), "wallet unknown, so staking.caps.min_wallet 5 cannot be kept"),
    (round_proposal(10, -1), "per-round stake -1"),
])
def test_a_round_stake_beyond_the_caps_is_refused(proposal, needle):
    caps = Caps(max_stake=1000.0, max_locked=5000.0, max_change=50.0, min_wallet=5.0)
    with pytest.raises(NumerlabError, match="stake authorization refused, nothing asked") as e:
        check_round_within_caps(proposal, caps)
    assert needle in str(e.value)


def test_a_round_stake_within_the_caps_passes():
    caps = Caps(max_stake=1000.0, max_locked=5000.0, max_change=50.0, min_wallet=5.0)
    check_round_within_caps(round_proposal(10, 60, locked=4940, wallet=65), caps)
    check_round_within_caps(round_proposal(1200, 0, locked=6000), caps)  # nothing more
    check_round_within_caps(round_proposal(900, 700, wallet=705), caps)  # a cut beyond 50


# --- task=backtest under ABS ------------------------------------------------------------

def backtest_args(run_dir: Path, job: Path, *extra: str) -> list[str]:
    return ["task=backtest", "staking=fixed", "staking.stake=150", f"run_dir={run_dir}",
            f"hydra.run.dir={job}", *extra]


def test_backtest_opens_a_position_per_era_with_the_apis_multipliers(fake_numerai, tmp_path,
                                                                     scored_run):
    """A 60-day target resolves 12 eras later; the current round's multipliers are used."""
    (scored_run / ".hydra").mkdir()
    (scored_run / ".hydra" / "config.yaml").write_text("target:\n  name: target_cyrusd_60\n")
    fake_numerai.open_round(1005, payout_scores=[
        {"name": "v2_corr20", "displayName": "CORR", "isPayout": True,
         "defaultMultiplier": "3", "minMultiplier": "3", "maxMultiplier": "3", "version": 1},
        {"name": "mmc", "displayName": "MMC", "isPayout": True, "defaultMultiplier": "15",
         "minMultiplier": "15", "maxMultiplier": "15", "version": 1}])
    job = tmp_path / "job"
    proc = run_cli(backtest_args(scored_run, job, *api(fake_numerai)))
    ok(proc)
    metrics = read_json(job / "metrics.json")
    assert (metrics["rule"], metrics["mode"], metrics["resolution_eras"]) == ("abs", "fixed", 12)
    assert (metrics["corr_mult"], metrics["mmc_mult"], metrics["clip"]) == (3, 15, 1)
    assert metrics["multipliers_from"] == "Numerai's API, round 1005"
    # the wallet funds the initial per-round stake in each of the 12 rounds open at once
    assert (metrics["wallet"], metrics["capital"]) == (1200, 1200)
    assert metrics["return_denominator"].startswith("capital: 1200 NMR")
    assert metrics["baseline"] == "fixed 100 NMR per round (fixed mode)"
    frame = pl.read_parquet(job / "backtest.parquet")
    policy = frame.filter(pl.col("strategy") == "policy")
    assert {"stake", "resolved_payout", "locked", "wallet", "per_round_stake"} <= set(
        frame.columns)
    assert policy["resolved_payout"][:12].to_list() == [0.0] * 12  # nothing resolves sooner
    assert policy["locked"].max() == metrics["policy_peak_locked"] <= 5000  # max_locked
    assert metrics["fixed_final_stake"] == 100
    assert metrics["policy_total_return"] == pytest.approx(
        policy["equity"][-1] / metrics["capital"] - 1)
    assert "total return on 1200 NMR" in proc.stdout


def test_backtest_multipliers_fall_back_to_the_config(fake_numerai, tmp_path, scored_run):
    url = fake_numerai.url
    fake_numerai.stop()  # Numerai's API does not answer
    job = tmp_path / "job"
    ok(run_cli(backtest_args(scored_run, job, f"tournament.api_url={url}",
                             "tournament.timeout_s=2")))
    metrics = read_json(job / "metrics.json")
    assert (metrics["corr_mult"], metrics["mmc_mult"]) == (5, 10)  # conf/payout/abs.yaml
    assert metrics["multipliers_from"].startswith("config (Numerai's API did not answer")
    assert metrics["resolution_eras"] == 4  # no saved config: this config's main target


def test_backtest_config_multipliers_ask_nothing(fake_numerai, tmp_path, scored_run):
    fake_numerai.open_round(1005)
    job = tmp_path / "job"
    ok(run_cli(backtest_args(scored_run, job, *api(fake_numerai),
                             "payout.multipliers_from=config", "staking/mode=compound",
                             "payout.resolution_eras=2", "task.wallet=1000")))
    metrics = read_json(job / "metrics.json")
    assert (metrics["multipliers_from"], metrics["corr_mult"], metrics["mode"]) == (
        "config", 5, "compound")
    assert (metrics["resolution_eras"], metrics["capital"]) == (2, 1000)
    assert fake_numerai.state.requests == []


def test_every_return_is_stated_with_its_denominator(tmp_path, scored_run):
    """v2: the baseline is a fixed stake (payouts to the wallet), and a wallet set changes
    the capital the returns are on, which metrics.json says."""
    returns = {}
    for wallet in ("null", "500"):
        job = tmp_path / f"job-{wallet}"
        ok(run_cli(backtest_args(scored_run, job, "payout=v2", f"task.wallet={wallet}")))
        metrics = read_json(job / "metrics.json")
        frame = pl.read_parquet(job / "backtest.parquet")
        baseline = frame.filter(pl.col("strategy") == "fixed")
        assert metrics["baseline"] == "fixed 100 NMR stake (payouts to the wallet)"
        assert baseline["stake"].max() <= 100  # never compounds above the fixed stake
        assert metrics["return_denominator"] == (
            f"capital: {metrics['capital']:g} NMR, the initial stake + the wallet at the start")
        returns[wallet] = metrics
    assert (returns["null"]["capital"], returns["500"]["capital"]) == (100, 600)
    for metrics in returns.values():
        final = metrics["capital"] * (1 + metrics["fixed_total_return"])
        assert final == pytest.approx(metrics["capital"] + metrics["fixed_total_payout"])

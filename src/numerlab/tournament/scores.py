"""Live scores: what Numerai reports per round for a model (numerapi 3.1's
`submission_scores`, the GraphQL `submissionScores`), read over a `TournamentClient`.

Numerai names each score by a display name; numerlab's metrics are CORR, MMC and BMC.
`SCORE_NAMES` is the one place that maps them, preferred name first: the names Numerai's
round score configs and model performances use (`canon_corr` / `v2_corr20` for CORR,
`canon_mmc` / `mmc` for MMC, `canon_bmc` / `bmc` for BMC). Scores are stored under their
raw display name; `metric_of` maps one back, and a round with two names of one metric uses
the preferred one.

`submissionScores` needs no account (numerapi sends it without authorization); the model
id does (`TournamentClient.model_id` reads the account's models). One query per display
name with `distinctOnRound`: the latest day of each round, resolved or not.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from numerlab.history import Score

if TYPE_CHECKING:
    from numerlab.tournament.client import TournamentClient

# numerlab metric -> Numerai's display names of it, preferred first
SCORE_NAMES: dict[str, tuple[str, ...]] = {
    "corr": ("canon_corr", "v2_corr20"),
    "mmc": ("canon_mmc", "mmc"),
    "bmc": ("canon_bmc", "bmc"),
}
METRICS = tuple(SCORE_NAMES)


def metric_of(display_name: str) -> str | None:
    """The numerlab metric (corr, mmc, bmc) of a Numerai display name, or None."""
    wanted = display_name.strip().lower()
    for metric, names in SCORE_NAMES.items():
        if wanted in names:
            return metric
    return None


def preference(display_name: str) -> int:
    """Rank of a display name among its metric's names (0 = preferred)."""
    metric = metric_of(display_name)
    return SCORE_NAMES[metric].index(display_name.strip().lower()) if metric else 99


def _iso(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.isoformat()
    return None if value is None else str(value)


def _number(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def to_score(model_name: str, item: dict[str, Any]) -> Score | None:
    """One `submissionScores` item as a history Score (None without a round or name)."""
    if not isinstance(item, dict) or item.get("roundNumber") is None \
            or not item.get("displayName"):
        return None
    day = item.get("day")
    return Score(model=model_name, round=int(item["roundNumber"]),
                 name=str(item["displayName"]), value=_number(item.get("value")),
                 percentile=_number(item.get("percentile")),
                 day=None if day is None else int(day), resolved=bool(item.get("resolved")),
                 resolve_date=_iso(item.get("resolveDate") or item.get("roundResolveTime")))


def latest_per_round(scores: Iterable[Score]) -> list[Score]:
    """One score per (round, name): the latest day (a resolved one wins a tie)."""
    chosen: dict[tuple[int, str], Score] = {}
    for score in scores:
        key = (score.round, score.name)
        old = chosen.get(key)
        if old is None or (score.day or 0, score.resolved) >= (old.day or 0, old.resolved):
            chosen[key] = score
    return sorted(chosen.values(), key=lambda s: (s.round, s.name))


def live_scores(client: TournamentClient, model_name: str) -> list[Score]:
    """The live scores of `model_name` (an account model), one per round and display name
    of SCORE_NAMES, the latest day of each."""
    model_id = client.model_id(model_name)
    found: list[Score] = []
    for name in (n for names in SCORE_NAMES.values() for n in names):
        with client._numerapi("submissionScores"):
            items = client.api.submission_scores(model_id, display_name=name,
                                                 distinct_on_round=True)
        found.extend(s for s in (to_score(model_name, i) for i in items) if s is not None)
    return latest_per_round(found)

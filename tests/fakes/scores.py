"""Live scores on the fake Numerai: the `submissionScores` operation numerapi 3.1.1's
`submission_scores` sends (base_api.py: without authorization; variables modelId,
displayName, version, day, resolved, tournament, lastNRounds, distinctOnRound; fields
roundId submissionId roundNumber roundResolveTime roundScoreTime roundCloseStakingTime value
percentile displayName version date day resolveDate resolved, times as ISO text).

Installed on every FakeNumerai as `fake.scores`:

    fake.scores.add("my_model", 1001, "canon_corr", 0.02, day=5)            # intra-round
    fake.scores.add("my_model", 1001, "canon_corr", 0.03, day=20, resolved=True)

Filters as numerapi documents them: `lastNRounds` keeps the model's most recent N rounds,
`distinctOnRound` "keep[s] only the latest score per round after applying other filters"
(the latest day of each round and display name).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from fakes.numerai_server import TOURNAMENT, GraphQLFailure, _iso

if TYPE_CHECKING:
    from fakes.numerai_server import FakeNumerai

ROUND_ZERO = datetime(2026, 1, 6, 13, tzinfo=UTC)  # round numbers map to dates from here


@dataclass
class LiveScore:
    model_id: str
    round_number: int
    display_name: str
    value: float
    day: int
    resolved: bool
    percentile: float | None = None
    version: str = "1"
    submission_id: str = field(default_factory=lambda: str(uuid.uuid4()))


class LiveScores:
    def __init__(self, fake: FakeNumerai):
        self.fake = fake
        self.rows: list[LiveScore] = []

    def add(self, model_name: str, round_number: int, display_name: str, value: float,
            day: int = 20, resolved: bool = False, percentile: float | None = None
            ) -> LiveScore:
        """A score Numerai reports for `model_name` in `round_number` on `day`."""
        with self.fake.lock:
            model = self.fake.state.models[model_name]
            row = LiveScore(model.id, round_number, display_name, float(value), day,
                            resolved, percentile)
            self.rows.append(row)
            return row

    def submissionScores(self, variables: Mapping[str, Any]) -> list[dict[str, Any]]:
        if variables.get("modelId") is None:
            raise GraphQLFailure('Variable "$modelId" of required type "ID!" was not provided.')
        tournament = variables.get("tournament")
        if tournament is not None and tournament != TOURNAMENT:
            return []
        rows = [r for r in self.rows if r.model_id == variables["modelId"]]
        for key, attribute in (("displayName", "display_name"), ("version", "version"),
                               ("day", "day"), ("resolved", "resolved")):
            wanted = variables.get(key)
            if wanted is not None:
                rows = [r for r in rows if getattr(r, attribute) == wanted]
        last = variables.get("lastNRounds")
        if last is not None:
            recent = sorted({r.round_number for r in rows}, reverse=True)[: int(last)]
            rows = [r for r in rows if r.round_number in recent]
        if variables.get("distinctOnRound"):
            # numerapi: "keep only the latest score per round after applying other filters"
            latest: dict[int, LiveScore] = {}
            for row in rows:
                if row.round_number not in latest or row.day >= latest[row.round_number].day:
                    latest[row.round_number] = row
            rows = list(latest.values())
        rows.sort(key=lambda r: (-r.round_number, r.display_name, -r.day))
        return [self._item(r) for r in rows]

    @staticmethod
    def _item(row: LiveScore) -> dict[str, Any]:
        close = ROUND_ZERO + timedelta(days=row.round_number - 1000)
        resolve = close + timedelta(days=31)
        return {"roundId": str(uuid.uuid5(uuid.NAMESPACE_OID, f"round-{row.round_number}")),
                "submissionId": row.submission_id, "roundNumber": row.round_number,
                "roundResolveTime": _iso(resolve), "roundScoreTime": _iso(close
                                                                          + timedelta(days=3)),
                "roundCloseStakingTime": _iso(close), "value": row.value,
                "percentile": row.percentile, "displayName": row.display_name,
                "version": row.version, "date": _iso(close + timedelta(days=row.day)),
                "day": row.day, "resolveDate": _iso(resolve) if row.resolved else None,
                "resolved": row.resolved}


def install(fake: FakeNumerai) -> LiveScores:
    """Register `submissionScores` on `fake` (no authorization, as numerapi sends it)."""
    scores = LiveScores(fake)
    fake.extra_operations["submissionScores"] = scores.submissionScores
    return scores

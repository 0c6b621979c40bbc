"""numerlab.settings, the one checker of config values: what each shape lets through, and a
refusal that is one line naming the key, the value and what is allowed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from numerlab import settings
from numerlab.errors import NumerlabError


@pytest.mark.parametrize(("check", "message"), [
    (lambda: settings.integer("cv.n_jobs", True, minimum=1),
     "cv.n_jobs=True must be an integer >= 1"),
    (lambda: settings.integer("seed", 2.0), "seed=2.0 must be an integer"),
    (lambda: settings.number("payout.clip", math.inf, minimum=0, maximum=1),
     "payout.clip=inf must be a number within [0, 1]"),
    (lambda: settings.number("payout.clip", math.nan), "payout.clip=nan must be a number"),
    (lambda: settings.number("staking.cut_fraction", 0, above=0, maximum=1),
     "staking.cut_fraction=0 must be a number > 0 and <= 1"),
    (lambda: settings.number("staking.caps.max_stake", "1", minimum=0, optional=True),
     "staking.caps.max_stake='1' must be null or a number >= 0"),
    (lambda: settings.required("payout", {"clip": 0.05}, ("corr_mult", "clip")),
     "payout.corr_mult is missing (settings: corr_mult, clip)"),
])
def test_a_refusal_names_the_key_the_value_and_what_is_allowed(check, message):
    with pytest.raises(NumerlabError) as error:
        check()
    assert str(error.value) == message


def test_what_passes_comes_back_as_a_plain_value():
    assert settings.integer("seed", np.int64(3)) == 3 and type(settings.integer("s", 3)) is int
    assert settings.number("payout.clip", np.float32(0.5), minimum=0, maximum=1) == 0.5
    assert settings.number("caps.max_stake", None, optional=True) is None
    settings.required("payout", {"corr_mult": 0.75, "clip": 0.05}, ("corr_mult", "clip"))

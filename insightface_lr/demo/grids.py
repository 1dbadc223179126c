"""The tuning grids of the demo: for each distilling method, the candidates it is tuned over on val.bin.

A candidate is the term's ``weight`` in the sum, any of the term's own fields (``distill_config`` of its recipe)
that differ from the recipe's, and ``margin_weight`` (a trainer field) where the margin loss beside the term is
the choice. Every method of a grid gets the same number of candidates, so no method is tuned harder than another;
``none`` has no term, nothing to tune. Adding a method to a grid is one entry here.

``pretrained`` (issue 30): from a pretrained start the normalised terms (every term starts at its weight, beside a
margin loss of ~33) are searched over the weights 1/4/16 and one field of each term's own; AIRD gets its parts:
the prediction part nearly off (``lambda_p`` 0.01), the relation part alone with the feature part (``lambda_p``
0), as drawn at weight 4.
"""

from __future__ import annotations

from typing import Any

Candidate = dict[str, Any]
_WEIGHTS: tuple[Candidate, ...] = ({"weight": 1.0}, {"weight": 4.0}, {"weight": 16.0})

GRIDS: dict[str, dict[str, tuple[Candidate, ...]]] = {
    "pretrained": {
        "kd": (*_WEIGHTS, {"weight": 4.0, "tau": 2.0}),
        "feat": (*_WEIGHTS, {"weight": 4.0, "metric": "mse"}),
        "rkd": (*_WEIGHTS, {"weight": 4.0, "angle_weight": 0.0}),
        "ccface": (*_WEIGHTS, {"weight": 4.0, "lambda_acr": 4.0}),
        "aird": ({"weight": 1.0}, {"weight": 4.0}, {"weight": 4.0, "lambda_p": 0.01},
                 {"weight": 4.0, "lambda_p": 0.0, "beta": 2.0}),
        "bank": (*_WEIGHTS, {"weight": 4.0, "lambda_f": 0.0}),  # the relation over the memory alone
        "bridge": (*_WEIGHTS, {"weight": 64.0}),
        # its feat term toward the bridge's LR view, with no margin loss (the recipe); AdamW is blind to the weight of
        # a lone term, so its candidates move what matters: the margin loss beside it and the metric
        "bridge2": ({"weight": 1.0}, {"weight": 1.0, "margin_weight": 1.0}, {"weight": 4.0, "margin_weight": 1.0},
                    {"weight": 1.0, "metric": "mse"}),
    },
}


def candidate_label(candidate: Candidate) -> str:
    """``{"weight": 4.0, "tau": 2.0}`` -> ``"w4 tau=2"`` (the tuning table's column text)."""
    rest = " ".join(f"{k}={v:g}" if isinstance(v, float | int) else f"{k}={v}"
                    for k, v in candidate.items() if k != "weight")
    return f"w{candidate['weight']:g}" + (f" {rest}" if rest else "")

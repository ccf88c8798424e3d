"""``dlparts ablate``: each idea of the papers measured on the embedded data, everything else equal, over seeds.

:data:`EXPERIMENTS` holds the ten experiments (:mod:`dlparts.ablate.experiments`); :func:`run_experiment` trains every
setting of one over seeds through the engine and writes ``results.json`` and its figure; :func:`table` gives the
printed table; :func:`verdict` is the rule that turns an effect into agrees / disagrees / inconclusive
(:mod:`dlparts.ablate.stats`).
"""

from dlparts.ablate.experiments import EXPERIMENTS
from dlparts.ablate.runner import Claim, Experiment, Setting, run_experiment, summarize
from dlparts.ablate.show import table
from dlparts.ablate.stats import RULE, Effect, Stat, effect, stat, verdict

__all__ = ["EXPERIMENTS", "RULE", "Claim", "Effect", "Experiment", "Setting", "Stat", "effect", "run_experiment",
           "stat", "summarize", "table", "verdict"]

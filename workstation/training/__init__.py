"""Local retraining of reward models (torch lives here; the encoder's one-time
conversion in ``encoder.py`` is the only other place that imports it).

``train(ws, dataset, name, ...)`` fits a reward head on a dataset as
currently reviewed (flips, label edits and exclusions applied), exports it to
ONNX, checks the export against torch and registers it as the next version of
``name`` with its lineage. Callers outside this package import it lazily
(inside a function), so that starting the workstation never loads torch.

What comes out of the ONNX graph (the registered score is ``reward``):

* pairs / labels (input ``embedding`` [N, 2·D] = prompt then response
  embedding, input kind ``text-embedding``): ``reward`` [N] (the ensemble
  mean; for labels a logit, safe = positive), ``members`` [N, M] and
  ``uncertainty`` [N] (the members' standard deviation);
* demos (input ``observation`` [N, obs_dim], input kind ``observation``):
  ``reward`` [N] in [0, 1], ``expert_rewards`` [N, E], ``gate`` [N, E] and
  ``uncertainty`` [N] (gate-weighted standard deviation of expert_rewards),
  from the occupancy-and-progress reward (``occupancy``, the default) or the
  paper's mixture of autoencoders (``iirl``, ``model=moe-ae``), calibrated on
  held-out demonstration steps (``workstation.calibration``).

The manifest's ``uncertainty`` entry names these outputs; ``calibration``
(demonstration rewards) says what the reward's 0.5 means.
"""

from workstation.training.data import split_roles
from workstation.training.params import DEFAULTS
from workstation.training.trainer import TrainResult, train

__all__ = ["DEFAULTS", "TrainResult", "split_roles", "train"]

"""Suppression patches: local corrections layered on an unchanged base model.

A patch is a set of Gaussian suppression kernels in the model's input space
that lowers the reward near confirmed flaws, keeps protected inputs within a
budget, ships inside the exported ONNX graph, stacks with other patches and
can be removed again. Start at ``create_patch``; ``kernels`` defines the
patched score, ``graph`` the ONNX export.
"""

from workstation.patching.kernels import (RULES, SuppressionKernel, kernel_activations,
                                          patched_scores)
from workstation.patching.layers import get_patch
from workstation.patching.patches import (PatchResult, create_patch, decide_rule, list_patches,
                                          remove_patch)

__all__ = ["RULES", "PatchResult", "SuppressionKernel", "create_patch", "decide_rule",
           "get_patch", "kernel_activations", "list_patches", "patched_scores", "remove_patch"]

"""Workspace policy: the rules releases and team review follow.

Each setting has a type, a default and a check; ``set`` (approvers only)
appends a signed ``policy-set`` ledger row ``{key, value, previous}``, and
the value in force is the newest such row's (else the default), so the
ledger alone says what the policy was at any time.

    release.approvals     how many distinct trusted approvers must sign a release (1)
    release.separation    with 2+ approvals the requester cannot approve their own
                          release, and an adjudicator cannot settle a conflict they
                          are part of (on)
    review.label_policy   the label in force while analysts disagree: 'adjudicated'
                          (the imported label until an adjudicator decides) or
                          'majority'
"""

from __future__ import annotations

from typing import Any

from workstation import ledger, review_state, trust
from workstation.errors import WorkstationError
from workstation.identity import Signer
from workstation.policy_rules import (SETTINGS, PolicyValue, Setting, _setting, get, show,
                                      text)
from workstation.workspace import Workspace

__all__ = ["SETTINGS", "PolicyValue", "Setting", "get", "set", "show", "text"]


def set(ws: Workspace, key: str, value: Any, *, signer: Signer | None = None  # noqa: A001
        ) -> PolicyValue:
    """Set ``key`` to ``value`` (text or typed; checked): approvers only, a signed ledger row."""
    setting = _setting(key)
    parsed = setting.parse(value)
    with ws.transaction():
        signer = trust.require(ws, signer, "approver")
        previous = get(ws, key)
        if parsed == previous:
            raise WorkstationError(f"{key} is already {text(parsed)}")
        entry = ledger.append(ws, "policy-set", {"key": key, "value": parsed,
                                                 "previous": previous}, signer=signer)
        if key == "review.label_policy":  # the label in force of disputed examples follows it
            review_state.refresh_disputed(ws)
    return PolicyValue(key, parsed, setting.default, setting.help, entry.actor, entry.time,
                       entry.seq)

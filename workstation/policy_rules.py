"""The workspace policy's settings and the values in force: what each key
means, its default, how a value is checked, and the newest signed
``policy-set`` ledger row's value (else the default). Setting a value, with
its consequences, is ``workstation.policy.set``; this module only reads, so
the review state can read the policy without a cycle."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Callable

from workstation.errors import WorkstationError
from workstation.workspace import Workspace


@dataclass(frozen=True)
class Setting:
    """One policy key: what it means, its default and how a value is read."""

    key: str
    help: str
    default: Any
    parse: Callable[[Any], Any]


def _approvals(value: Any) -> int:
    try:
        number = int(str(value).strip()) if not isinstance(value, bool) else None
    except ValueError:
        number = None
    if number is None or not 1 <= number <= 100:
        raise WorkstationError(f"release.approvals must be a whole number from 1 to 100, "
                               f"not '{value}'")
    return number


def _on_off(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("on", "true", "yes", "1"):
        return True
    if text in ("off", "false", "no", "0"):
        return False
    raise WorkstationError(f"release.separation must be on or off, not '{value}'")


def _label_policy(value: Any) -> str:
    text = str(value).strip().lower()
    if text not in ("adjudicated", "majority"):
        raise WorkstationError(f"review.label_policy must be adjudicated or majority, "
                               f"not '{value}'")
    return text


SETTINGS: dict[str, Setting] = {s.key: s for s in (
    Setting("release.approvals", "distinct trusted approvers a release needs", 1, _approvals),
    Setting("release.separation", "with 2+ approvals no one approves their own release; "
            "an adjudicator cannot settle their own conflict", True, _on_off),
    Setting("review.label_policy", "the label in force while analysts disagree: "
            "adjudicated (the imported label until adjudicated) or majority",
            "adjudicated", _label_policy),
)}


@dataclass(frozen=True)
class PolicyValue:
    """A setting as it stands: its value, and who set it when (None: the default)."""

    key: str
    value: Any
    default: Any
    help: str
    set_by: str | None = None
    set_at: str | None = None
    ledger_seq: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _setting(key: str) -> Setting:
    if key not in SETTINGS:
        raise WorkstationError(f"unknown policy '{key}'; one of {', '.join(SETTINGS)}")
    return SETTINGS[key]


def _newest(ws: Workspace, key: str) -> dict[str, Any] | None:
    rows = ws.execute("SELECT seq, time, actor, payload FROM ledger WHERE kind = 'policy-set' "
                      "AND json_extract_string(payload, '$.key') = ? ORDER BY seq DESC LIMIT 1",
                      [key]).fetchall()
    if not rows:
        return None
    seq, time, actor, payload = rows[0]
    return {"seq": seq, "time": time, "actor": actor, "value": json.loads(payload)["value"]}


def get(ws: Workspace, key: str) -> Any:
    """The value of ``key`` in force (typed: int, bool or str)."""
    setting = _setting(key)
    newest = _newest(ws, key)
    return setting.default if newest is None else setting.parse(newest["value"])


def show(ws: Workspace) -> list[PolicyValue]:
    """Every setting with its value in force."""
    out = []
    for key, setting in SETTINGS.items():
        newest = _newest(ws, key)
        if newest is None:
            out.append(PolicyValue(key, setting.default, setting.default, setting.help))
        else:
            out.append(PolicyValue(key, setting.parse(newest["value"]), setting.default,
                                   setting.help, newest["actor"], newest["time"], newest["seq"]))
    return out


def text(value: Any) -> str:
    """A value as the CLI shows it (booleans as on/off)."""
    return ("on" if value else "off") if isinstance(value, bool) else str(value)

"""Delegated authority: who may take which desk decision for how much, and whether a
decision overrides the system's. Pure rules over the configuration; the store applies them
inside the transaction that records the decision."""

from __future__ import annotations

import math
from dataclasses import dataclass

from riskcast.config import DeskConfig
from riskcast.errors import AuthorityError, InputError

#: what a desk decision may be: the order(s) approved, approved with conditions, declined, or a
#: limit set against which the case's orders are decided
ACTIONS = ("approve", "approve_with_conditions", "decline", "set_limit")
#: actions that write an approved limit
LIMIT_ACTIONS = ("approve", "approve_with_conditions", "set_limit")
#: roles that decide cases (a viewer reads, an admin manages users)
DECIDING = ("analyst", "manager", "credit_committee")


@dataclass(frozen=True)
class Needed:
    """What a decision of ``amount`` needs: one person of a role whose authority covers it, or
    (above the highest authority) two different people of the highest roles."""

    amount: float
    approvers: int
    roles: tuple[str, ...]

    def text(self) -> str:
        who = " or ".join(r.replace("_", " ") for r in self.roles)
        if self.approvers == 1:
            return f"one {who} (exposure {self.amount:,.2f})"
        return f"two different approvers, each a {who} (exposure {self.amount:,.2f})"


def needed(amount: float, cfg: DeskConfig) -> Needed:
    """The approvers a decision of ``amount`` of exposure needs."""
    top = max(cfg.authority.values())
    if amount <= top:
        roles = tuple(r for r in DECIDING if cfg.authority.get(r, 0.0) >= amount)
        return Needed(amount, 1, roles)
    return Needed(amount, 2, tuple(r for r in DECIDING if cfg.authority.get(r, 0.0) == top))


def decision_amount(action: str, credit_limit: float | None, exposure: float) -> float:
    """The exposure a decision accepts: the limit it sets, or the case's exposure when that is
    larger (an approval accepts the orders); a decline accepts none."""
    if action == "decline":
        return 0.0
    limit = 0.0 if credit_limit is None else credit_limit
    return max(limit, exposure) if action != "set_limit" else limit


def check_action(action: str, credit_limit: float | None, exposure: float, reason_code: str, text: str,
                 cfg: DeskConfig) -> None:
    """The decision's own fields, each named when wrong."""
    if action not in ACTIONS:
        raise InputError(f"action: {action!r} is not one of {', '.join(ACTIONS)}", field="action")
    if reason_code not in cfg.reason_codes:
        raise InputError(f"reason_code: {reason_code!r} is not one of {', '.join(cfg.reason_codes)}",
                         field="reason_code")
    if not text or not text.strip():
        raise InputError("text: say why, in words (the reason code alone is not a record)", field="text")
    if len(text) > 4000:
        raise InputError("text: at most 4,000 characters", field="text")
    if action in LIMIT_ACTIONS:
        if credit_limit is None or not math.isfinite(credit_limit) or not 0 <= credit_limit <= 1e13:
            raise InputError(f"credit_limit: {action} needs a limit, a number in [0, 1e13]; got {credit_limit!r}",
                             field="credit_limit")
        if action != "set_limit" and credit_limit + 0.005 < exposure:
            raise InputError(f"credit_limit: {credit_limit:,.2f} is below the exposure of {exposure:,.2f} the "
                             f"approval accepts (set_limit decides the orders against a lower limit)",
                             field="credit_limit")


def check_authority(role: str, user_id: str, need: Needed, first_approver: str | None) -> None:
    """Refuse a decision beyond the user's authority, and a second approval by the person who
    gave the first. ``first_approver``: who approved first when two are needed (None: nobody yet)."""
    if role not in DECIDING:
        raise AuthorityError(f"role: {'an' if role[0] in 'aeiou' else 'a'} {role} decides no case (deciding roles: "
                             f"{', '.join(DECIDING)})", field="role")
    if role not in need.roles:
        who = role.replace("_", " ")
        raise AuthorityError(f"authority: this decision needs {need.text()}; {'an' if who[0] in 'aeiou' else 'a'} "
                             f"{who} may not give it", field="authority")
    if need.approvers == 2 and first_approver == user_id:
        raise AuthorityError(f"authority: {user_id} gave the first approval; the second must be another person's",
                             field="authority")


def override(action: str, credit_limit: float | None, exposure: float, recommended: float | None) -> str:
    """How a desk decision departs from the system's recommendation: ``up`` (more credit than
    the system recommended), ``down`` (less), or ``none``. A decline is ``down`` when the
    system's limit covered the exposure, else it agrees with it."""
    rec = 0.0 if recommended is None or not math.isfinite(recommended) else recommended
    if action == "decline":
        return "down" if exposure > 0 and exposure <= rec + 0.005 else "none"
    limit = 0.0 if credit_limit is None else credit_limit
    if limit > rec + 0.005:
        return "up"
    if limit < rec - 0.005:
        return "down"
    return "none"

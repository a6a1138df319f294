"""Settings values of the transfer policy (bandwidth, transfers), read into the objects
:mod:`app.policy` works with. The checks themselves live beside those objects, so the
settings file and the CLI/tray accept exactly the same spellings."""

from __future__ import annotations

from typing import Any

from app.policy.bandwidth import BandwidthError, parse_bwlimit
from app.policy.concurrency import TransfersError, parse_transfers
from app.policy.conflict import ConflictPolicyError, parse_conflict_policy
from app.policy.subscriptions import SubscriptionError, parse_subscriptions
from app.settings.schema import Kind

__all__ = ["POLICY_KINDS", "coerce_policy"]

POLICY_KINDS = frozenset({Kind.BWLIMIT, Kind.TRANSFERS, Kind.CONFLICT_POLICY,
                          Kind.SUBSCRIPTIONS})


def coerce_policy(kind: Kind, value: object) -> Any:
    """The policy object for ``value``; raises coerce.Invalid with what to write."""
    from app.settings.coerce import Invalid

    try:
        if kind is Kind.BWLIMIT:
            return parse_bwlimit(value)
        if kind is Kind.TRANSFERS:
            return parse_transfers(value)
        if kind is Kind.CONFLICT_POLICY:
            return parse_conflict_policy(value)
        if kind is Kind.SUBSCRIPTIONS:
            return parse_subscriptions(value)
    except (ConflictPolicyError, SubscriptionError) as exc:
        raise Invalid(exc.message, exc.fix, exc.subpath) from None
    except (BandwidthError, TransfersError) as exc:
        raise Invalid(exc.message, exc.fix) from None
    raise AssertionError(f"not a policy kind: {kind}")  # pragma: no cover

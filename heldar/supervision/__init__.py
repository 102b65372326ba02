"""Supervision without Ray: reconcile planning, the unit lifecycle, recorder versions and budgets."""

from heldar.supervision.plan import ReconcilePlan, plan_reconcile

__all__ = ["ReconcilePlan", "plan_reconcile"]

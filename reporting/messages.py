"""The words of a push message (CONTRACT §7), in the recipient's language: no names, no IINs."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from flask import has_app_context
from flask_babel import force_locale
from flask_babel import gettext as _

from . import labels
from .deadlines import to_local
from .models import AgencyKind, PushDelivery
from .present import iso
from .vocabulary import Circumstance, DeliveryKind

log = logging.getLogger("besik.messages")


def payload(delivery: PushDelivery, token: str | None, locale: str | None, *,
            is_agency_member: bool = True) -> dict[str, Any]:
    """The push message (CONTRACT §7), in the recipient's language; no names, no IINs.

    Someone outside the notice's agency (an admin) is told whom to call, not asked to
    acknowledge."""
    if locale not in (None, "en") and not has_app_context():
        # flask-babel translates only inside an app context (`flask worker` runs in one):
        # outside it every message would be English without a trace. Say so.
        log.warning("a push for a reader of %r is rendered in English: no app context",
                    locale)
    with force_locale(locale or "en"):
        notice = delivery.notice
        if delivery.kind == DeliveryKind.COVERAGE and delivery.gap is not None:
            gap = delivery.gap
            return {"type": "coverage", "notice_id": None, "report_id": None,
                    "reference": None,
                    "title": _("Coverage gap: %(what)s", what=str(labels.GAP_KINDS.get(
                        gap.kind, gap.kind))),
                    "body": f"{gap.code}: {gap.detail}"[:400], "url": "/admin#gaps",
                    "gap_id": gap.id,
                    "ack_due_at": None, "ack_token": None}
        if notice is None:
            return {"type": "test", "notice_id": None, "report_id": None, "reference": None,
                    "title": _("Besik test notification"),
                    "body": _("Notifications work on this device."), "url": "/inbox",
                    "ack_due_at": None, "ack_token": None}
        report = notice.report
        due = _local_hhmm(notice.ack_due_at)
        what = str(Circumstance(report.circumstance).label)
        if delivery.kind == DeliveryKind.ESCALATION:
            title = _("Not acknowledged: %(ref)s", ref=report.reference)
            body = _("%(agency)s has not acknowledged this report (due %(time)s).",
                     agency=notice.agency.name, time=due)
            if not is_agency_member:
                body += " " + _("Call %(agency)s: %(phone)s.", agency=notice.agency.name,
                                phone=notice.agency.phone or "—")
        elif delivery.kind == DeliveryKind.REMINDER and notice.acknowledged_at is not None:
            title = _("Reminder: examine the child, %(ref)s", ref=report.reference)
            body = _("The examination deadline is near.")
        elif delivery.kind == DeliveryKind.REMINDER:
            title = _("Reminder: acknowledge %(ref)s", ref=report.reference)
            body = _("Acknowledge by %(time)s.", time=due)
        else:
            title = (_("Police: new report %(ref)s", ref=report.reference)
                     if notice.agency.kind is AgencyKind.POLICE
                     else _("New report %(ref)s", ref=report.reference))
            body = _("%(facility)s: %(what)s. Acknowledge by %(time)s.",
                     facility=report.facility.name, what=what, time=due)
        return {"type": delivery.kind,
                "labels": {"acknowledge": _("Acknowledge"), "open": _("Open"),
                           "acknowledged": _("Acknowledged")},
                "notice_id": notice.id, "report_id": report.id,
                "reference": report.reference, "title": title, "body": body,
                "url": f"/reports/{report.id}", "ack_due_at": iso(notice.ack_due_at),
                "ack_token": token}


def _local_hhmm(moment: datetime) -> str:
    return to_local(moment).strftime("%H:%M")

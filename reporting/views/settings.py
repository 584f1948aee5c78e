"""The national settings pages: the deadline policy.

It is national (one policy for the whole country). Every admin may read it, because a
region's admin must know the rules that their region's reports are judged by; only an admin
of the whole country (no region) may change it: a region's admin gets the page without its
forms, and 403 for a post.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, redirect, render_template, request, url_for
from flask_login import current_user

from .. import clock
from ..access import allow
from ..bodies import POLICY_RULE
from ..db import reading, writing
from ..errors import Fields, ForbiddenError, ValidationError
from ..models import Role
from ..policy import change_rule, history, latest_version, rules_of
from ..schema import Obj

bp = Blueprint("settings", __name__)


def _may_change() -> bool:
    """Only an admin of the whole country changes what is national."""
    return current_user.role is Role.ADMIN and current_user.region_id is None


def _national_admin_only() -> None:
    if not _may_change():
        raise ForbiddenError()


def _posted(schema: Obj) -> dict[str, str]:
    """The form's fields that `schema` knows (the CSRF token and strays left out)."""
    return {name: value for name, value in request.form.items() if name in schema.fields}


# --- The deadline policy ------------------------------------------------------------------


@bp.get("/admin/policy")
@allow(Role.ADMIN)
def policy_page() -> Any:
    """Every rule in force with its duration, legal basis and whether counsel verified it;
    the versions so far."""
    return _policy_page()


@bp.post("/admin/policy")
@allow(Role.ADMIN)
def change_policy() -> Any:
    """Save one rule's form: a new policy version (or nothing, when nothing changed)."""
    _national_admin_only()
    form = _posted(POLICY_RULE)
    try:
        data = POLICY_RULE.clean(form)
        with writing() as session:
            version = change_rule(session, data["rule"], duration=data["duration"],
                                  basis=data["basis"],
                                  verified=data.get("verified", False),  # unticked: absent
                                  actor_id=current_user.id, now=clock.now())
    except ValidationError as exc:
        return _policy_page(form, exc.fields)
    done: dict[str, Any] = {"saved": version.id} if version else {"unchanged": 1}
    return redirect(url_for("settings.policy_page", **done, _anchor=f"rule-{data['rule']}"),
                    303)


def _policy_page(form: dict[str, str] | None = None, errors: Fields | None = None) -> Any:
    with reading() as session:
        version = latest_version(session)
        versions = history(session)
    rules = list(rules_of(version).values()) if version else []
    saved = request.args.get("saved", "")
    return render_template(
        "settings/policy.html", version=version, rules=rules, versions=versions,
        form=form or {}, errors=errors or {}, may_change=_may_change(),
        any_unverified=any(not rule.is_basis_verified for rule in rules),
        saved=int(saved) if saved.isascii() and saved.isdigit() else None,
        unchanged="unchanged" in request.args), 422 if errors else 200

"""The root (each role to its home) and the load balancer's health check."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, redirect, url_for
from flask_login import current_user
from sqlalchemy.exc import SQLAlchemyError

from ..access import PUBLIC, SIGNED_IN, allow
from ..db import get_db
from ..models import Role

bp = Blueprint("home", __name__)

HOMES = {Role.REPORTER: "reports.new", Role.OFFICER: "officer.inbox", Role.ADMIN: "admin.index"}


@bp.get("/")
@allow(SIGNED_IN)
def index() -> Any:
    """Send each role to its home page."""
    return redirect(url_for(HOMES[current_user.role]))


@bp.get("/healthz")
@allow(PUBLIC)
def healthz() -> Any:
    """200 when the database answers, else 503."""
    try:  # a bare connection: load balancers call this often, and it needs no ORM session
        with get_db().engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except SQLAlchemyError:
        return jsonify(status="unavailable"), 503
    return jsonify(status="ok")

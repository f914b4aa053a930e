"""The admin JSON API under /api/ (PRODUCT.md §2): one blueprint, one module per noun."""

from __future__ import annotations

from flask import Blueprint

from ivr.auth import admin_required

bp = Blueprint("api", __name__, url_prefix="/api")


@bp.before_request
@admin_required
def require_token() -> None:
    """Every /api/ call needs a bearer token; checked here once for the whole blueprint."""


from ivr.api import calls, customers, incidents, supervisors  # noqa: E402,F401  (routes register on bp)

"""The Jinja2 environment of the pages (autoescaped) and its number and time formats."""
from __future__ import annotations

import datetime as dt
import functools
import math
from pathlib import Path
from typing import Any

import jinja2
from bson import ObjectId
from markupsafe import Markup

from service.web.pages import format_time

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"


def clean(value: Any) -> Any:
    """JSON-safe data: datetimes as ISO strings, NaN and infinities as null, ObjectIds as strings."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, ObjectId):
        return str(value)
    return value


def json_script(value: Any) -> Markup:
    """``value`` as JSON that is safe inside a <script type="application/json"> element."""
    from jinja2.utils import htmlsafe_json_dumps

    return htmlsafe_json_dumps(clean(value))


def fmt(value: Any, decimals: int = 4) -> str:
    """A number with ``decimals`` decimals ("-" for none; integers as they are)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int) and decimals == 0:
        return str(value)
    if isinstance(value, (int, float)):
        return f"{value:.{decimals}f}"
    return str(value)


def signed(value: Any, decimals: int = 4) -> str:
    if value is None:
        return "-"
    return f"{value:+.{decimals}f}"


def percent(value: Any, decimals: int = 1) -> str:
    if value is None:
        return "-"
    return f"{100 * value:+.{decimals}f}%"


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters.update(fmt=fmt, signed=signed, percent=percent, time=format_time, json_script=json_script)
    return env


def render(template: str, context: dict[str, Any]) -> str:
    return environment().get_template(template).render(**context)

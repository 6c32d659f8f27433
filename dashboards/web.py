"""What every page module shares, re-exported in one place for branches written before the split.

The code lives in small modules by concern, which the page modules import directly:
``dashboards.viewer`` (who is looking, refusals, navigation), ``dashboards.lookups`` (scoped 404 lookups, time
zone), ``dashboards.render`` (templates, headers, page data), ``dashboards.page_errors`` (login redirect and the
403/404 page), ``dashboards.forms`` (origin check, flash messages) and ``dashboards.streaming`` (SSE snapshots).
New code should import those; this module only keeps ``from dashboards.web import …`` working.
"""

from __future__ import annotations

from dashboards.forms import (
    FLASH_COOKIE,
    clean_text,
    flash_error,
    flash_ok,
    form_page,
    same_origin,
)
from dashboards.lookups import device_of, estate_of, room_of, viewer_tz
from dashboards.page_errors import login_redirect, page_error
from dashboards.render import (
    CSP,
    HERE,
    STATIC_DIR,
    TEMPLATES,
    asset_version,
    live_page_data,
    page_data,
    render,
    render_fragment,
    static_url,
)
from dashboards.streaming import bounded_stream, stream
from dashboards.viewer import (
    LANG_COOKIE,
    EquipmentViewer,
    LoginRequired,
    PageError,
    Viewer,
    ViewerDep,
    can_see,
    equipment_viewer,
    get_viewer,
    here,
    request_lang,
    require,
    safe_next,
)

__all__ = [
    "CSP",
    "FLASH_COOKIE",
    "HERE",
    "LANG_COOKIE",
    "STATIC_DIR",
    "TEMPLATES",
    "EquipmentViewer",
    "LoginRequired",
    "PageError",
    "Viewer",
    "ViewerDep",
    "asset_version",
    "bounded_stream",
    "can_see",
    "clean_text",
    "device_of",
    "equipment_viewer",
    "estate_of",
    "flash_error",
    "flash_ok",
    "form_page",
    "get_viewer",
    "here",
    "live_page_data",
    "login_redirect",
    "page_data",
    "page_error",
    "render",
    "render_fragment",
    "request_lang",
    "require",
    "room_of",
    "safe_next",
    "same_origin",
    "static_url",
    "stream",
    "viewer_tz",
]

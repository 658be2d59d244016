"""Report sections and the HTML page that strings them together (Jinja2, autoescaped).

A section is made by a small function ``section(...) -> Section``: an HTML fragment (rendered
from its own autoescaped template) plus the files it wrote into the report folder.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

_ENV = Environment(loader=PackageLoader("introspeech", "report/templates"),
                   autoescape=select_autoescape(default=True, default_for_string=True))
NOT_APPLICABLE = "—"


def _format(fmt: str, *args) -> str:
    """Jinja's ``format`` filter, printing — for a value that does not apply (None or NaN)."""
    if any(a is None or (isinstance(a, float) and math.isnan(a)) for a in args):
        return NOT_APPLICABLE
    return fmt % args


_ENV.filters["format"] = _format


@dataclass
class Section:
    """One part of the report."""

    title: str
    html: Markup
    files: list[Path] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")


def fragment(template: str, **context) -> Markup:
    """Render an HTML fragment from a template string; every value is escaped."""
    return Markup(_ENV.from_string(template).render(**context))


def write_report(out_dir: str | Path, sections: list[Section], title: str = "introspeech report",
                 subtitle: str = "") -> Path:
    """Write ``OUT/index.html`` from the sections; returns its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    page = _ENV.get_template("report.html.jinja").render(title=title, subtitle=subtitle, sections=sections)
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path

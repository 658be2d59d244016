"""HTML report: figures, sections and the page builder."""

from .html import Section, fragment, write_report

__all__ = ["Section", "fragment", "write_report"]

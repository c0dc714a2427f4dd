"""Values (paths, names, reasons) put into Markdown that a notebook displays.

A folder name is data, not markup: ``display(Markdown(f"Dataset `{path}`"))`` lets a
backtick in the path end the code span and turn the rest into live HTML (an ``<img
onerror=...>``) in JupyterLab and in the HTML report. ``md_escape`` makes a value plain
text in Markdown; ``md_code`` shows it as a code span that no backtick can close.
"""

from __future__ import annotations

import html
import re

__all__ = ["md_escape", "md_code"]

# Inline Markdown punctuation (CommonMark, GFM tables and strikethrough, math `$`): a
# backslash before each makes it a literal character. `<`, `>`, `&`, quotes: entities.
# `(`, `)`, `.`, `-`, `:` stay as they are: with `[`, `]`, `<` escaped no link can form,
# and inside a line they start nothing. `_` between two letters or digits is literal in
# CommonMark (no intraword emphasis), so `pt_inception` stays readable.
# A `:` before `/` is escaped too, so that no bare URL (`http://...`) is autolinked.
_MD_SPECIAL = re.compile(r"([\\`*{}\[\]|~$!])|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])|:(?=/)")
# Block starts at the beginning of the value: a heading, list item, quote, thematic break,
# setext underline, ordered list item ("1." / "1)"): its marker is escaped.
# (`>` needs nothing: it becomes `&gt;`, which starts no quote.)
_BLOCK_START = re.compile(r"^(\s*)(\d*)([#+\-=.)])")
_LINE_BREAKS = re.compile(r"[\r\n\t\f\v\u2028\u2029\x85]+")


def _one_line(value) -> str:
    """`str(value)` with line breaks as spaces and other control characters removed."""
    text = _LINE_BREAKS.sub(" ", str(value))
    return "".join(c for c in text if c >= " " and c != "\x7f")


def md_escape(value) -> str:
    """`str(value)` as inert inline Markdown text: Markdown punctuation backslash-escaped,
    HTML special characters (`< > & " '`) as entities and line breaks as spaces, so it
    can neither start a block nor open a tag, link, code span or formula."""
    text = _MD_SPECIAL.sub(lambda m: "\\" + m.group(0), _one_line(value))
    text = _BLOCK_START.sub(lambda m: m.group(1) + m.group(2) + "\\" + m.group(3), text)
    return html.escape(text, quote=True)


def md_code(value) -> str:
    """`value` as an inline code span, literally: the fence is one backtick longer than
    the longest run of backticks in the value (so none can close it early), line breaks
    become spaces (so it cannot end the paragraph) and one space pads each side (which
    Markdown removes again). Inside a code span nothing is Markdown, HTML or math. For
    a GFM table cell use `md_escape` (a `|` splits cells even inside a code span)."""
    text = _one_line(value)
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    return f"{fence} {text} {fence}"

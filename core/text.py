"""Text from input (file names, labels, task and probe fields), made safe for where it is shown.

A file name or a label is data, never markup or a command: printed raw, ``\\x1b]0;...\\x07``
retitles the user's terminal and ``\\x1b[2J`` clears it; written raw into report.md, a label
``<img src=...>`` or ``**x**`` becomes HTML or emphasis and a ``|`` breaks the table; in a
matplotlib label, ``$...$`` is parsed as math and a lone ``$`` fails the figure. Each
function here shows the text as the characters it holds, for one destination.
"""
from __future__ import annotations

import re

#: C0 and C1 control characters, DEL, and the Unicode controls that reorder or hide text
#: (bidirectional overrides and isolates, zero-width and line/paragraph separators)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
#: what CommonMark (and GitHub's tables and math) read as markup; each is escaped with a
#: backslash, which CommonMark defines for every ASCII punctuation character
_MARKDOWN = re.compile(r"([\\`*_\[\]<>#!|$~&])")


def _escape_control(match: re.Match[str]) -> str:
    char = match.group()
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def for_terminal(text: object, keep_newlines: bool = False) -> str:
    """``text`` with every control character shown as its escape (``\\x1b``, ``\\u202e``):
    nothing from input can move the cursor, retitle the terminal or hide a character.
    ``keep_newlines`` keeps line breaks (a message of several lines musicrep itself wrote)."""
    text = str(text)
    if keep_newlines:
        return "\n".join(_CONTROL.sub(_escape_control, line) for line in text.split("\n"))
    return _CONTROL.sub(_escape_control, text)


def for_markdown(text: object) -> str:
    """``text`` as literal characters in Markdown, inline or in a table cell: markup and HTML
    characters escaped, control characters (line breaks included) shown as escapes."""
    return _MARKDOWN.sub(r"\\\1", for_terminal(text))


def for_plot(text: object) -> str:
    """``text`` as literal characters in a matplotlib label: ``$`` escaped (no math text),
    control characters shown as escapes."""
    return for_terminal(text).replace("$", r"\$")


def code_fence(text: str, language: str = "") -> list[str]:
    """``text`` in a Markdown code block whose fence is longer than any run of backticks in it,
    so the text cannot close the block early."""
    runs = [len(run) for run in re.findall("`+", text)]
    fence = "`" * max(3, max(runs, default=0) + 1)
    shown = _CONTROL.sub(lambda m: m.group() if m.group() in "\n\t" else _escape_control(m), text)
    return [fence + language, shown, fence]

"""Text from outside the pipeline (Meta's names and messages, a feed's values) made safe to print
on a terminal. Every command that prints such text goes through `safe_text` (tables and CSV through
`report.py`, error lines through `cli/app.py`, run progress through `cli/progress.py`); stored
values stay as Meta sent them.

A terminal obeys control characters: ESC starts CSI (`\\x1b[31m`, colours, cursor moves, erasing)
and OSC sequences (`\\x1b]0;title\\x07` sets the window title; some terminals run more), BEL rings,
CR rewrites the line; C1 codes (`\\x9b`, `\\x9d`) do the same on some terminals, and Unicode's
bidirectional overrides reorder what is shown. Each is shown escaped (`\\x1b`, `\\u202e`) instead, so
the sequence it would start is plain text. Printable Unicode (accents, CJK, emoji) is kept.
"""

from __future__ import annotations

import re

# C0 (tab and new line too: a printed name or value is one line), DEL, C1, the bidirectional marks,
# embeddings, overrides and isolates, and the line and paragraph separators.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe_text(text: object) -> str:
    """`text` as one line a terminal shows without obeying anything in it."""
    return _UNSAFE.sub(_escaped, str(text))


def safe_lines(text: object) -> str:
    """`text` line by line through `safe_text`, its new lines kept (a multi-line message)."""
    return "\n".join(safe_text(line) for line in str(text).split("\n"))

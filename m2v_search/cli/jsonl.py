"""One JSON object per line of output, safe for line-based readers and terminals."""

from __future__ import annotations

import json
import re
from typing import Any

# Valid JSON leaves these unescaped, but Python's str.splitlines() splits on U+0085, U+2028 and
# U+2029, and terminals act on C1 controls (U+009B is CSI) and bidirectional overrides. Written as
# \uXXXX escapes, each line still decodes to the same values.
_UNSAFE = re.compile("[\u0080-\u009f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def json_line(payload: Any) -> str:
    """``payload`` as one line of JSON (UTF-8 text kept readable, unsafe characters escaped), with its newline."""
    return _UNSAFE.sub(lambda match: f"\\u{ord(match.group()):04x}", json.dumps(payload, ensure_ascii=False)) + "\n"

"""newsbeam's own log: `--log-level` and `--log-format text|json`, on stderr.

newsbeam logs under the `newsbeam` logger (what each run polled, landed and committed,
each source that failed); Beam's and other libraries' loggers stay at ERROR unless
`-v` asks for everything. JSON lines carry the record's `extra` fields, so a log
shipper gets `source`, `status`, `run_id` as fields, not as text to parse.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any

LEVELS = ("debug", "info", "warning", "error")
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def setup(level: str = "warning", form: str = "text", verbose: bool = False) -> None:
    """Route newsbeam's log to stderr at `level` in `form`; everything else at ERROR
    (or INFO with `verbose`: Beam's own logs)."""
    handler = logging.StreamHandler(sys.stderr)
    if form == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.ERROR)
    logging.getLogger("newsbeam").setLevel(getattr(logging, level.upper()))

"""Which publication dates newsbeam believes.

A date before 1990 or more than FUTURE_TOLERANCE after the fetch is not believed: the
article is partitioned by its fetch date instead (`date_source = "fetched"`,
`published_at` null) and the feed parser records an `implausible_date` problem. A
day of tolerance covers every time zone a feed may mislabel (UTC-12 to UTC+14).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

EARLIEST_PLAUSIBLE = datetime(1990, 1, 1, tzinfo=timezone.utc)
FUTURE_TOLERANCE = timedelta(hours=24)


def plausible_date(published: datetime | None, fetched_at: datetime) -> datetime | None:
    """The date if it could be a real publication date, else None (never a 2098 partition)."""
    if published is None:
        return None
    if published < EARLIEST_PLAUSIBLE or published > fetched_at + FUTURE_TOLERANCE:
        return None
    return published

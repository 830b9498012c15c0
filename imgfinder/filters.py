"""What a search can be limited to: images or videos, one folder, and when a photo was taken.

A filter is applied inside the vector search (the indexers take the ids that pass), so a
rare kind or a small folder still fills all k results when k of them exist.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from imgfinder.errors import ConfigError

#: what a search can be limited to
KINDS = ("image", "video")


@dataclass(frozen=True)
class Filter:
    """Items of one `kind`, with a file under `folder`, taken from `since` to `until`
    (both inclusive), sorted into the collection's class `label`. When taken is the photo's
    EXIF DateTimeOriginal, else the file's modification time, both in local time as cameras
    record it."""

    kind: str | None = None
    folder: str | None = None
    since: date | None = None
    until: date | None = None
    label: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in (None, *KINDS):
            raise ConfigError(f"kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.folder is not None:
            if not str(self.folder).strip():
                raise ConfigError("the folder to search in is empty")
            folder = os.path.abspath(os.path.expanduser(str(self.folder)))
            object.__setattr__(self, "folder", folder.rstrip(os.sep) or os.sep)
        for name in ("since", "until"):
            object.__setattr__(self, name, parse_date(getattr(self, name), name))
        if self.label is not None:
            if not str(self.label).strip():
                raise ConfigError("the class to search in is empty")
            object.__setattr__(self, "label", str(self.label).strip())
        if self.since and self.until and self.since > self.until:
            raise ConfigError(f"the date range ends ({self.until}) before it starts ({self.since})")

    @property
    def narrows(self) -> bool:
        """Whether anything is filtered out at all."""
        fields = (self.kind, self.folder, self.since, self.until, self.label)
        return any(v is not None for v in fields)

    def taken_bounds(self) -> tuple[str | None, str | None]:
        """[from, to) as the ISO text the catalog stores EXIF dates in (None: open)."""
        end = _day_after(self.until)
        return (self.since.isoformat() if self.since else None), (end.isoformat() if end else None)

    def mtime_bounds(self) -> tuple[int | None, int | None]:
        """[from, to) as modification times in nanoseconds, from local midnight to midnight."""
        end = _day_after(self.until)
        start = _local_midnight_ns(self.since) if self.since else None
        return start, (_local_midnight_ns(end) if end else None)


def _day_after(day: date | None) -> date | None:
    """The next day; None for none, or for the last day a date can be (an open end)."""
    return None if day is None or day == date.max else day + timedelta(days=1)


def _local_midnight_ns(day: date) -> int:
    """Local midnight of `day` in nanoseconds since the epoch, held within SQLite's integers
    (which end in 2262); a day local time cannot place counts as UTC midnight."""
    try:
        seconds = int(datetime.combine(day, time()).timestamp())
    except (ValueError, OverflowError, OSError):
        seconds = (day - date(1970, 1, 1)).days * 86400
    return max(-_NS_LIMIT, min(_NS_LIMIT, seconds * 1_000_000_000))


_NS_LIMIT = 2**63 - 1


def as_filter(only: str | Filter | None) -> Filter | None:
    """A `Filter` from one, or from just a kind."""
    return Filter(kind=only) if isinstance(only, str) else only


def parse_date(value: object, name: str = "date") -> date | None:
    """A date from a `date`, a `datetime` or ISO text (YYYY-MM-DD); None stays None."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise ConfigError(f"{name} must be a date as YYYY-MM-DD, not {value!r}") from None

"""Human time stamps: video moments, and when a photo was taken."""


def format_timestamp(seconds: float | None) -> str:
    """00:01:23 style; None gives an empty string."""
    if seconds is None:
        return ""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}"


def format_taken(taken: str | None) -> str:
    """An ISO local date and time as "2024-05-01 10:00"; None gives an empty string."""
    return taken[:16].replace("T", " ") if taken else ""

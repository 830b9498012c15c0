"""Human time stamps for video moments."""


def format_timestamp(seconds: float | None) -> str:
    """00:01:23 style; None gives an empty string."""
    if seconds is None:
        return ""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}"

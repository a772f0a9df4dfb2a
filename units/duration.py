"""Durations as docker/go-units' ``HumanDuration`` writes them: ``Up 3 minutes``,
``Exited (0) About an hour ago``, ``CREATED`` columns."""


def human_duration(seconds: float) -> str:
    """go-units' HumanDuration of a duration in seconds: ``Less than a second``,
    ``1 second``, ``About a minute``, ``5 minutes``, ``About an hour``,
    ``3 hours``, ``4 days``, ``2 weeks``, ``3 months``, ``2 years``."""
    # Go converts each float (d.Seconds(), d.Minutes()) to int: truncation;
    # hours are rounded half up (d.Hours() + 0.5) except for the years,
    # which go back to the truncated hours.
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"

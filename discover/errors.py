"""The one error `python -m discover` reports: a problem the user can fix, as one line without a traceback."""


class DiscoverError(Exception):
    """A problem a user can fix, reported as one line without a traceback."""

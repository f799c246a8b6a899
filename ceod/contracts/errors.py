"""One base class for every error a user can fix; the CLI prints these without a traceback."""


class CeodError(Exception):
    """An error whose message tells the user what is wrong and what to do."""

"""Errors whose message is written for the person who typed the command."""


class UserError(Exception):
    """Shown to the person as is: polite, and says how to fix it. Nothing was changed."""


# The answer when a command failed on our side before anything was committed.
NOTHING_CHANGED = (
    "Something went wrong on my side and nothing was changed. Please try again; "
    "if it keeps happening, tell the fusion center's administrator."
)

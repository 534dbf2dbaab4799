"""Errors whose message is written for the person who typed the command."""


class UserError(Exception):
    """Shown to the person as is: polite, and says how to fix it. Nothing was changed."""

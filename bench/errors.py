"""Errors a user can cause; the CLI prints their message as one sentence and exits non-zero."""


class UserError(Exception):
    """Bad input from the user (path, size, option); the message names the file and the fix."""

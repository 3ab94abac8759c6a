"""Errors a user can cause: one clear message naming the thing and the fix."""


class UserError(Exception):
    """Bad params, a corrupt or missing file, a checksum mismatch: anything the user can fix.

    Stage scripts print the message and exit non-zero instead of showing a traceback.
    """

"""The one exception type for user mistakes.

Anything the user can fix (a bad file, an unknown key, an impossible value, a missing model) raises
`UserError` with a one-line message naming the file, line or field. The CLI prints it and exits 1 — no
traceback. Every other exception is a bug in ada-slm and keeps its traceback.
"""


class UserError(Exception):
    """A mistake in the user's input, reported as one line without a traceback."""

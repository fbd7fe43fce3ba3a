"""Errors a user can act on. The CLI prints these as one message, without a traceback."""
from __future__ import annotations


def one_line(text: object) -> str:
    """``text`` as it is, or quoted with its escapes (``repr``) when it holds a character that is
    not printable (a line break, a terminal control): a name read from a file keeps a message one line."""
    text = str(text)
    return text if text.isprintable() else repr(text)


class MusicrepError(Exception):
    """Base of every error that is the user's to fix (bad config, bad input, missing file)."""


class ConfigError(MusicrepError, ValueError):
    """A configuration value is wrong; names the file, the section and the key where known."""

    def __init__(self, message: str, *, file: str | None = None, section: str | None = None,
                 key: str | None = None) -> None:
        self.message, self.file, self.section, self.key = message, file, section, key
        super().__init__(str(self))

    def located(self, *, file: str | None = None, section: str | None = None) -> "ConfigError":
        """The same error, with the file and the enclosing section filled in where unknown."""
        inner = self.section
        if section and inner:
            inner = f"{section}.{inner}"
        return ConfigError(self.message, file=self.file or file, section=inner or section, key=self.key)

    def __str__(self) -> str:
        where = []
        if self.file:
            where.append(str(self.file))
        if self.section:
            where.append(f"[{one_line(self.section)}]")
        if self.key:
            where.append(f"key '{one_line(self.key)}'")
        return (" ".join(where) + ": " if where else "") + self.message


class ComponentError(MusicrepError, LookupError):
    """A component that does not exist, or a name that two plugins both claim."""


class PluginError(MusicrepError):
    """A plugin that failed to load or whose hook misbehaved."""


class WriteError(MusicrepError):
    """A file musicrep could not write (a full disk, a read-only folder, a file-size limit).

    One line naming the file and the system's reason: what was finished before is on disk under
    its real name (every write is atomic), so the same command resumes once the cause is fixed.
    """

    def __init__(self, path: object, reason: OSError | str) -> None:
        if isinstance(reason, OSError):
            reason = reason.strerror or str(reason) or type(reason).__name__
        self.path, self.reason = str(path), str(reason)
        super().__init__(f"{self.reason}: {self.path}; finished work is kept")

    def __str__(self) -> str:
        return f"{self.reason}: {self.path}; finished work is kept"

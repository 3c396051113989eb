"""Folders and files the cache opens without following links, relative to their folder.

Everything the folder store creates under the user's folder (``sklearn_albert_cache/``, a
folder per namespace, and the files in it) is reached from an open descriptor of its parent
folder (``dir_fd``), with ``O_NOFOLLOW``: a symbolic link planted in its place makes the
open fail with ``ELOOP`` instead of reading or writing whatever it points to, and a folder
swapped for a link after it was opened changes nothing. Folders are created 0700 and files
0600 (before the umask): vectors of a user's texts are the user's.

Where the platform has no ``dir_fd`` support (Windows), paths are joined instead and only
the final component is protected, where ``O_NOFOLLOW`` exists.
"""

import errno
import os
import stat

from ._integrity import write_all

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_BINARY = getattr(os, "O_BINARY", 0)
_AT = {os.open, os.mkdir, os.stat, os.unlink, os.replace} <= os.supports_dir_fd and _DIRECTORY


def _not_regular(name):
    return OSError(errno.ELOOP, f"{name} is not a regular file", name)


class Folder:
    """An open folder, and the files and folders the cache keeps in it.

    Parameters
    ----------
    path : str
        Where it is (for messages, and for the platforms without ``dir_fd``).
    fd : int or None
        Its open descriptor; None where ``dir_fd`` is not supported.
    """

    def __init__(self, path, fd):
        self.path = path
        self.fd = fd

    @classmethod
    def user(cls, path, *, create):
        """The user's folder (``embedding_cache``): a link there is the user's choice."""
        if create:
            os.makedirs(path, exist_ok=True)
        if not _AT:
            if not os.path.isdir(path):
                raise FileNotFoundError(errno.ENOENT, "no such folder", path)
            return cls(path, None)
        return cls(path, os.open(path, os.O_RDONLY | _DIRECTORY | _CLOEXEC))

    def _at(self, name):
        if self.fd is None:
            return os.path.join(self.path, name), {}
        return name, {"dir_fd": self.fd}

    def folder(self, name, *, create):
        """The folder ``name`` in this one, created 0700 if asked; never through a link."""
        where, at = self._at(name)
        if create:
            try:
                os.mkdir(where, 0o700, **at)
            except FileExistsError:
                pass
        path = os.path.join(self.path, name)
        if self.fd is None:
            if not os.path.lexists(path):
                raise FileNotFoundError(errno.ENOENT, "no such folder", path)
            if os.path.islink(path) or not os.path.isdir(path):
                raise OSError(errno.ELOOP, "not a folder", path)
            return Folder(path, None)
        fd = os.open(where, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC, **at)
        return Folder(path, fd)

    def open(self, name, flags, *, create=False):
        """A regular file of this folder, opened without following a link (0600 if created)."""
        where, at = self._at(name)
        flags |= _NOFOLLOW | _CLOEXEC | _BINARY | (os.O_CREAT if create else 0)
        fd = os.open(where, flags, 0o600, **at)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise _not_regular(os.path.join(self.path, name))
        return fd

    def read(self, name, limit):
        """The bytes of a small regular file (at most ``limit``); FileNotFoundError if none."""
        fd = self.open(name, os.O_RDONLY | _NONBLOCK)
        try:
            size = os.fstat(fd).st_size
            if size > limit:
                raise OSError(errno.EFBIG, f"{name} is {size} bytes, more than {limit}")
            chunks, n_read = [], 0
            while True:
                chunk = os.pread(fd, limit + 1 - n_read, n_read)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
                n_read += len(chunk)
                if n_read > limit:
                    raise OSError(errno.EFBIG, f"{name} grew beyond {limit} bytes")
        finally:
            os.close(fd)

    def replace(self, name, data):
        """Write ``data`` to ``name`` whole: to a new file first, then renamed over it."""
        partial = name + ".partial"
        where, at = self._at(partial)
        try:
            os.unlink(where, **at)
        except FileNotFoundError:
            pass
        fd = self.open(partial, os.O_WRONLY | os.O_EXCL, create=True)
        try:
            write_all(fd, data, 0)
        finally:
            os.close(fd)
        if self.fd is None:
            os.replace(where, os.path.join(self.path, name))
        else:  # a rename replaces a link planted at ``name``; it never writes through it
            os.replace(partial, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)

    def size(self, name):
        """The size of a regular file of this folder, not following a link."""
        where, at = self._at(name)
        info = os.stat(where, follow_symlinks=False, **at)
        if not stat.S_ISREG(info.st_mode):
            raise _not_regular(os.path.join(self.path, name))
        return info.st_size

    def names(self):
        return os.listdir(self.fd if self.fd is not None else self.path)

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

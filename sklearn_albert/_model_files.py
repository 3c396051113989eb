"""The names a checkpoint's files may have, and the one safe way to write and read them.

A pickle, a skops file or a saved folder carries a checkpoint as ``{file name: bytes}`` or
as a folder of files. The names come from the file, so they are untrusted: a name such as
``/usr/lib/python3/site-packages/x.pth`` or ``../../x.pth`` would make a naive restore
write wherever it points, and a ``.pth`` file there runs code at the next interpreter
start. Every restore therefore goes through :func:`restored_checkpoint`:

- each name must be one of the checkpoint file names that ``save_pretrained`` writes for
  the encoders this project loads (:data:`CHECKPOINT_FILE_NAMES`, plus numbered
  safetensors shards); anything else (an absolute path, ``..``, a path separator, an
  unknown name) is refused, naming it, before anything is written;
- the files go into a fresh private temporary folder, each created with
  ``O_CREAT | O_EXCL | O_NOFOLLOW`` and mode 0600, so that no existing file or link is
  followed or overwritten.

Reading a saved folder, :func:`open_regular_file` refuses symbolic links, FIFOs and
anything else that is not a regular file, naming it (a FIFO would block the reader).
Writing a folder that must appear whole or not at all, :func:`staged_folder` fills a
hidden folder beside it and renames it into place.
"""

import os
import re
import secrets
import shutil
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path

#: What ``save_pretrained`` writes for ALBERT/BERT-family encoders and their fast or slow
#: tokenizers (transformers 4.48 to 5.x): weights, configuration, tokenizer files. Only
#: data formats: no ``.py``, no pickled ``.bin``.
CHECKPOINT_FILE_NAMES = frozenset(
    {
        # model
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "model.safetensors.index.json",
        # tokenizer: shared files
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        # tokenizer: vocabularies (SentencePiece for ALBERT, XLM-R, DeBERTa-v2; WordPiece
        # for BERT, DistilBERT, ELECTRA, MiniLM; byte-level BPE for RoBERTa)
        "spiece.model",
        "sentencepiece.bpe.model",
        "sentencepiece.model",
        "spm.model",
        "tokenizer.model",
        "vocab.txt",
        "vocab.json",
        "merges.txt",
    }
)
#: Sharded weights: ``model-00001-of-00003.safetensors`` (five digits, as transformers
#: names them).
SHARD_NAME = re.compile(r"model-[0-9]{5}-of-[0-9]{5}\.safetensors")


def is_checkpoint_file_name(name):
    """Whether ``name`` is a plain checkpoint file name this project restores."""
    return isinstance(name, str) and (
        name in CHECKPOINT_FILE_NAMES or SHARD_NAME.fullmatch(name) is not None
    )


def check_checkpoint_file_names(names, *, source):
    """Refuse any name that is not an allow-listed checkpoint file name.

    Parameters
    ----------
    names : iterable of str
    source : str
        What holds the names, for the error ("the pickled model files", a folder path).

    Raises
    ------
    ValueError
        Naming every refused name.
    """
    refused = sorted(repr(name) for name in names if not is_checkpoint_file_name(name))
    if refused:
        raise ValueError(
            f"Refusing to restore {source}: {', '.join(refused)} "
            f"{'is not a' if len(refused) == 1 else 'are not'} checkpoint file "
            f"name{'' if len(refused) == 1 else 's'} save_pretrained writes (plain names such "
            "as config.json, model.safetensors, tokenizer.json, spiece.model, vocab.txt; "
            "no folders, no absolute paths, no '..'). The file was not written by "
            "sklearn_albert or has been tampered with."
        )


@contextmanager
def restored_checkpoint(files, *, source="the pickled model files"):
    """Write ``{file name: bytes}`` into a fresh private folder; yield its path.

    Every name is checked before anything is written; the folder and its files are
    removed on exit.

    Parameters
    ----------
    files : mapping of str to bytes
    source : str, default="the pickled model files"
        What the files come from, for errors.

    Yields
    ------
    folder : str
    """
    if not isinstance(files, dict):
        raise ValueError(
            f"Refusing to restore {source}: expected a dict of file names to bytes, got a "
            f"{type(files).__name__}."
        )
    check_checkpoint_file_names(files, source=source)
    not_bytes = sorted(
        name for name, content in files.items() if not isinstance(content, (bytes, bytearray))
    )
    if not_bytes:
        raise ValueError(
            f"Refusing to restore {source}: the contents of {not_bytes} are not bytes."
        )
    with tempfile.TemporaryDirectory(prefix="sklearn_albert_") as folder:
        for name, content in files.items():
            write_new_file(Path(folder, name), content)
        yield folder


@contextmanager
def staged_folder(path):
    """A hidden folder beside ``path`` to fill, renamed to ``path`` if the block succeeds.

    The rename replaces an empty folder at ``path`` and fails on one with files in it, so
    ``path`` holds the complete folder or stays as it was. On error (a short write, a full
    disk) the hidden folder is removed; a writer killed mid-way leaves it behind, under
    ``.NAME.<hex>``, and nothing at ``path``. The folder keeps the umask's mode (not
    ``mkdtemp``'s 0700), as one made with ``mkdir`` would.
    """
    path = Path(path)
    staging = path.parent / f".{path.name}.{secrets.token_hex(6)}"
    staging.mkdir()
    try:
        yield staging
        os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_new_file(path, content):
    """Create ``path`` (which must not exist, and is never a link followed) with mode 0600."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    descriptor = os.open(path, flags, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(content)


def check_regular_file(path):
    """Refuse ``path`` unless it is a regular file (not a link, FIFO, device or folder).

    Raises
    ------
    FileNotFoundError
        If nothing is at ``path``.
    ValueError
        Naming the file and what it is instead.
    """
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"Cannot load {str(path)!r}: it is missing.") from None
    if not stat.S_ISREG(mode):
        raise ValueError(
            f"Refusing to load {str(path)!r}: it is {_kind(mode)}, not a regular file. A "
            "saved folder holds only the regular files save() wrote; copy the folder with "
            "its files (not links to them)."
        )


def check_real_folder(path):
    """Refuse ``path`` if it is a symbolic link or not a folder (absent is allowed)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(mode):
        raise ValueError(
            f"Refusing to load {str(path)!r}: it is {_kind(mode)}, not a folder. A saved "
            "folder holds only the folders and regular files save() wrote."
        )


def open_regular_file(path):
    """Open ``path`` for reading in binary mode, refusing links, FIFOs and devices.

    The check and the open are one step (``O_NOFOLLOW | O_NONBLOCK``, then ``fstat`` of
    what was opened), so a file swapped for a link or a FIFO in between is refused too,
    and a FIFO never blocks the reader.
    """
    check_regular_file(path)
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        descriptor = os.open(path, flags)
    except OSError as error:
        raise ValueError(
            f"Refusing to load {str(path)!r}: cannot open it safely ({error})."
        ) from None
    mode = os.fstat(descriptor).st_mode
    if not stat.S_ISREG(mode):
        os.close(descriptor)
        raise ValueError(
            f"Refusing to load {str(path)!r}: it is {_kind(mode)}, not a regular file."
        )
    return os.fdopen(descriptor, "rb")


def _kind(mode):
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISREG(mode):
        return "a regular file"
    return "not a regular file"

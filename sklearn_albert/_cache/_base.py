"""What every store shares: hit and miss counts, and the writing protocol.

The protocol (see ``AlbertVectorizer._embed``): ``lookup`` every text; for the misses,
enter ``writing(namespace)``, ``lookup`` them again (another thread or process may have
written them meanwhile), encode what is still missing and ``store`` it. ``writing`` holds the
namespace's in-process mutex (and, for a folder, its lock file), so two threads or processes
never encode the same text twice; ``lookup`` takes neither, so a hit never waits on a writer.
"""

import contextlib
import threading

from ._integrity import StepAside


class CacheBase:
    """Hit and miss counts, the per-namespace writer mutex, and the re-lookup rule."""

    #: Whether threads of this process take turns inside ``writing`` (per namespace).
    writers_take_turns = False

    def __init__(self):
        self._lock = threading.RLock()  # counts and the store's state; never held while waiting
        self._local = threading.local()
        self._writers = {}  # namespace -> RLock held by the thread inside ``writing``
        self.step_aside = StepAside()
        self.hits = 0
        self.misses = 0

    def _count(self, n_found, n_texts):
        with self._lock:
            if getattr(self._local, "writing", 0):
                # A re-lookup inside ``writing``: these texts were counted as misses by the
                # lookup before it; those found now were written by someone else meanwhile.
                self.hits += n_found
                self.misses = max(0, self.misses - n_found)
            else:
                self.hits += n_found
                self.misses += n_texts - n_found

    def _writer(self, namespace):
        with self._lock:
            writer = self._writers.get(namespace)
            if writer is None:
                writer = self._writers[namespace] = threading.RLock()
            return writer

    @contextlib.contextmanager
    def writing(self, namespace):
        """Held while the caller looks up again, encodes the misses and stores them.

        Inside it, :meth:`lookup` is a re-lookup of texts already counted as misses: a text
        found then counts as a hit instead, one not found is not counted twice. Where
        ``writers_take_turns``, another thread entering ``writing`` for the same namespace
        waits (then finds what this one stored); lookups never wait.

        Parameters
        ----------
        namespace : str
            The namespace the caller is about to write.
        """
        # Taken without self._lock: lookups go on meanwhile.
        turn = self._writer(namespace) if self.writers_take_turns else contextlib.nullcontext()
        with turn:
            self._local.writing = getattr(self._local, "writing", 0) + 1
            try:
                with self._exclusive(namespace):
                    yield self
            finally:
                self._local.writing -= 1

    def _exclusive(self, namespace):
        """Exclusive access across processes, for stores that processes share."""
        return contextlib.nullcontext()

    def _reset_locks(self):
        """After a fork: the parent's threads hold nothing here."""
        self._lock = threading.RLock()
        self._local = threading.local()
        self._writers = {}
        self.step_aside.after_fork()

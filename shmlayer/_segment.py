"""The segment file: create or attach race-free, map it, lock it, notice re-creation.

Creation: ``open(O_CREAT | O_EXCL)`` decides the one creator, which takes the flock
*before* sizing the file and writes ``magic`` last. An attacher takes the flock too, so it
sees either no magic (creator not done: retry, bounded) or a complete header. If the
creator died before writing the magic, the file's flock is free and the magic still zero
after the wait: the attacher initialises the segment itself, under the flock.

The flock serves only creation and attaching; the lock every operation takes is the
robust mutex in the header (``_layout``, "One lock"), reached through ``self.fast``.
The flock belongs to the *open file description*, which a forked child shares with its
parent: the child must not use (nor keep) the inherited fd, or it could hold the parent's
flock. :func:`os.register_at_fork` reopens it.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import re
import secrets
import time
import weakref
from typing import Callable

from . import _layout as L
from ._fastpath import FastPath

__all__ = [
    "LayoutVersionMismatch",
    "Segment",
    "SegmentError",
    "default_segment_name",
    "segment_path",
    "validate_segment_name",
]

SHM_DIR = "/dev/shm"
_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,200}\Z")
_ATTACH_WAIT = 2.0


class SegmentError(OSError):
    """The segment cannot be created or attached (no room, not ours, wrong mode...)."""


class LayoutVersionMismatch(SegmentError):
    """The segment was created by a shmchannels with another layout version.

    Stop every process of the old version (or ``python -m shmlayer unlink NAME``) first.
    """


def validate_segment_name(name: object) -> str:
    """Check a segment name (``/`` prefix allowed, as in ``shm_open``) and return it bare.

    Raises:
        TypeError: not a str, or not 1-200 of ``[A-Za-z0-9._-]``.
    """
    if not isinstance(name, str):
        raise TypeError(f"Segment name must be a str, not {type(name).__name__}: {name!r}")
    bare = name[1:] if name.startswith("/") else name
    if not _NAME_RE.match(bare) or bare in (".", ".."):
        raise TypeError(f"Invalid segment name {name!r}: use 1-200 of ASCII letters, digits, '.', '_', '-'")
    return bare


def default_segment_name() -> str:
    """``shmchannels-<hash>`` from DJANGO_SETTINGS_MODULE and the working directory.

    Two projects on one host never share a segment; every process of one project (master,
    ``manage.py`` commands, cron jobs run from the project directory) finds the same one.
    """
    key = f"{os.environ.get('DJANGO_SETTINGS_MODULE', '')}\0{os.getcwd()}"
    return "shmchannels-" + hashlib.sha1(key.encode("utf-8", "surrogateescape")).hexdigest()[:12]


def segment_path(name: str) -> str:
    """Path of the segment file for the (validated, bare) ``name``."""
    return os.path.join(SHM_DIR, name)


# Segments to fix up in a forked child (weak: a closed layer must not be kept alive).
_live_segments: "weakref.WeakSet[Segment]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for segment in list(_live_segments):
        segment._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


class Segment:
    """One process's handle on the segment: fd, mapping, typed views and the lock.

    Args:
        name: bare segment name (see :func:`validate_segment_name`).
        size: bytes for a new segment (ignored when attaching).
        mode: permission bits for a new segment.
        create: False to only attach (``stats``): a missing segment raises.
        on_recover: called with the segment under the lock when the dirty word shows that
            the previous holder died mid-operation.

    Raises:
        SegmentError: no room in /dev/shm, not a shmchannels segment, permission denied,
            or (create=False) no such segment or one whose creator never finished it.
        LayoutVersionMismatch: made by another layout version.
    """

    def __init__(
        self,
        name: str,
        size: int,
        mode: int = 0o600,
        create: bool = True,
        on_recover: Callable[["Segment"], None] | None = None,
    ) -> None:
        self.name = name
        self.path = segment_path(name)
        self.size = size
        self.mode = mode
        self.on_recover = on_recover
        self._pid = os.getpid()
        self.fast: FastPath | None = None
        self._fd = -1
        self._mm: mmap.mmap | None = None
        self.epoch = 0
        self.ino = 0
        self.created = False
        self._open(create)
        _live_segments.add(self)

    # ----------------------------------------------------------------- open / close

    def _open(self, create: bool) -> None:
        deadline = time.monotonic() + _ATTACH_WAIT
        while True:
            fd, created = self._open_fd(create)
            try:
                if created:
                    self._initialise(fd, self.size)
                    self.created = True
                    break
                if self._attach(fd, deadline, create):
                    break
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
            time.sleep(0.002)
        self._fd = fd

    def _open_fd(self, create: bool) -> tuple[int, bool]:
        if create:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, self.mode)
                return fd, True
            except FileExistsError:
                pass
            except PermissionError as exc:
                raise SegmentError(f"cannot create shm segment {self.path}: {exc.strerror}") from None
        try:
            return os.open(self.path, os.O_RDWR), False
        except FileNotFoundError:
            if create:  # unlinked between our two opens: try creating again
                return self._open_fd(create)
            raise SegmentError(f"no shm segment named {self.name!r} ({self.path} does not exist)") from None
        except PermissionError as exc:
            raise SegmentError(f"cannot open shm segment {self.path}: {exc.strerror}") from None

    def _initialise(self, fd: int, size: int) -> None:
        # Flock before sizing: attachers block on it and then see a complete header.
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            os.fchmod(fd, self.mode)  # exact mode whatever the umask
            geometry = L.plan_layout(size)
            check_room(size)
            os.ftruncate(fd, size)
            try:
                # Reserve the pages now: a full tmpfs must fail here, not SIGBUS later.
                os.posix_fallocate(fd, 0, size)
            except OSError as exc:
                os.ftruncate(fd, 0)
                raise SegmentError(f"cannot reserve {size} bytes for {self.path}: {exc.strerror}") from None
            self._map(fd, size)
            self._write_header(geometry)
        except BaseException:
            # Leave no half-made segment behind for the next process to trip on.
            self._unmap()
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            fcntl.flock(fd, fcntl.LOCK_UN)
            raise
        fcntl.flock(fd, fcntl.LOCK_UN)

    def _write_header(self, geometry: L.Geometry) -> None:
        from . import _heap  # the heap's initial free lists are part of a fresh segment

        u32, u64 = self.u32, self.u64
        H = L.H
        u32[H["version"] >> 2] = L.LAYOUT_VERSION
        u32[H["header_size"] >> 2] = L.HEADER_SIZE
        self.epoch = secrets.randbits(63) | 1
        u64[H["epoch"] >> 3] = self.epoch
        u64[H["segment_size"] >> 3] = geometry.segment_size
        for field in (
            "n_channels", "n_chan_buckets", "n_groups", "n_group_buckets", "n_members",
            "n_member_buckets", "n_nodes", "n_waiters", "chan_off", "chan_bucket_off",
            "group_off", "group_bucket_off", "member_off", "member_bucket_off", "node_off",
            "waiter_off", "bucket_waiters_off", "heap_off", "heap_size", "heap_max_order",
        ):
            u32[H[field] >> 2] = getattr(geometry, field)
        for bump in ("chan_bump", "group_bump", "member_bump", "node_bump"):
            u32[H[bump] >> 2] = 1
        self.f64[H["created_at"] >> 3] = time.time()
        self.geometry = geometry
        self._bind_fast()
        assert self.fast is not None
        self.fast.init_lock()
        _heap.Heap(self).reset()
        u64[H["magic"] >> 3] = L.MAGIC  # last: the segment is now usable

    def _attach(self, fd: int, deadline: float, create: bool) -> bool:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            st = os.fstat(fd)
            # A creator sizes the file before writing a byte, so a short file holding
            # anything but zeros was never one of ours: don't take it over.
            if 0 < st.st_size < L.HEADER_SIZE and any(os.pread(fd, st.st_size, 0)):
                raise SegmentError(f"{self.path} exists but is not a shmchannels segment")
            if st.st_size >= L.HEADER_SIZE:
                head = os.pread(fd, 16, 0)
                magic = int.from_bytes(head[:8], "little")
                version = int.from_bytes(head[8:12], "little")
                if magic == L.MAGIC:
                    if version != L.LAYOUT_VERSION:
                        raise LayoutVersionMismatch(
                            f"shm segment {self.path} has layout version {version}, this shmlayer "
                            f"speaks {L.LAYOUT_VERSION}: stop the old processes or unlink the segment"
                        )
                    self._map(fd, st.st_size)
                    self.geometry = read_geometry(self.u32, self.u64)
                    self._bind_fast()
                    self.epoch = self.u64[L.H["epoch"] >> 3]
                    self.ino = st.st_ino
                    return True
                if magic != 0:
                    raise SegmentError(f"{self.path} exists but is not a shmchannels segment")
            if time.monotonic() < deadline:
                return False
            if not create:  # attach-only (``stats``) must not write into the file
                raise SegmentError(f"{self.path} is not initialised (its creator died before finishing?)")
            # Magic still zero after the wait while we hold the flock: its creator died
            # mid-initialisation. Finish the job ourselves.
            size = st.st_size if st.st_size >= L.MIN_SEGMENT_SIZE else self.size
            geometry = L.plan_layout(size)
            if st.st_size != size:
                check_room(size)
                os.ftruncate(fd, size)
                os.posix_fallocate(fd, 0, size)
            self._map(fd, size)
            self._write_header(geometry)
            self.ino = st.st_ino
            return True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _map(self, fd: int, size: int) -> None:
        self._mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.mv = memoryview(self._mm)
        self.u32 = self.mv.cast("I")
        self.u64 = self.mv.cast("Q")
        self.f64 = self.mv.cast("d")
        if not self.ino:
            self.ino = os.fstat(fd).st_ino

    def _bind_fast(self) -> None:
        g = self.geometry
        assert self._mm is not None
        self.fast = FastPath(
            self._mm, g.chan_off, g.chan_bucket_off, g.n_chan_buckets, g.bucket_waiters_off,
            g.node_off, g.n_nodes, g.n_channels, g.waiter_off, g.n_waiters, g.heap_off,
            g.heap_size, g.heap_max_order, g.group_off, g.group_bucket_off, g.n_group_buckets,
            g.n_groups, g.member_off, g.n_members, self._pid,
        )

    def _unmap(self) -> None:
        if self.fast is not None:
            # Kept, not dropped: a thread of ours inside an operation must still be able
            # to unlock. Released, it refuses every new call ("closed").
            self.fast.release()
        for view in ("u32", "u64", "f64", "mv"):
            obj = self.__dict__.pop(view, None)
            if obj is not None:
                obj.release()
        if self._mm is not None:
            try:
                self._mm.close()
            except BufferError:
                # A thread of ours is still waiting for the lock inside FastPath: its
                # buffer export keeps the mapping alive until that wait ends, then the
                # mmap object unmaps when it is collected.
                pass
            self._mm = None

    def close(self) -> None:
        """Unmap and close the fd (idempotent). Must not be called under the lock."""
        self._unmap()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        _live_segments.discard(self)

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def unlink(self) -> None:
        """Remove the segment file if it is still the one we mapped."""
        try:
            if os.stat(self.path).st_ino == self.ino:
                os.unlink(self.path)
        except FileNotFoundError:
            pass

    def replaced(self) -> bool:
        """True if ``/dev/shm/<name>`` is now another file than the one we mapped.

        A merely unlinked segment (master gone) is not "replaced": re-creating it from
        every straggler would leave orphan segments behind; we re-attach when a new one
        appears.
        """
        try:
            return os.stat(self.path).st_ino != self.ino
        except FileNotFoundError:
            return False

    def _after_fork(self) -> None:
        # Our own pid in the dirty word, and our own open file description for flock.
        self._pid = os.getpid()
        if self.fast is not None:
            self.fast.set_pid(self._pid)
        if self._fd >= 0:
            old = self._fd
            # /proc/self/fd/N opens the very file we mapped (even if it was unlinked or
            # re-created meanwhile) with a fresh open file description.
            self._fd = os.open(f"/proc/self/fd/{old}", os.O_RDWR | os.O_CLOEXEC)
            os.close(old)

    # ----------------------------------------------------------------------- locking

    def acquire(self, timeout: float | None = None) -> None:
        """Take the segment lock; run recovery if the last holder died mid-operation.

        Raises:
            TimeoutError: ``timeout`` seconds passed (a holder that is stopped or stuck).
        """
        fast = self.fast
        if fast is None or self._fd < 0:
            raise SegmentError(f"shm segment {self.name!r} is closed")
        try:
            fast.lock(timeout)  # a dead holder's lock comes back consistent; the dirty word says more
        except TimeoutError:
            holder = self.u32[_OWNER_W]  # the holder's pid, read without the lock: for the message only
            raise TimeoutError(f"the segment lock is still held after {timeout:g} s (by pid {holder})") from None
        try:
            owner = self.u32[_OWNER_W]
            self.u32[_OWNER_W] = self._pid
            if owner and self.on_recover is not None:
                self.on_recover(self)
        except BaseException:
            fast.unlock()
            raise

    def release(self, clean: bool = True) -> None:
        """Drop the lock. ``clean=False`` (an exception mid-operation) leaves the dirty
        word set so that the next holder repairs whatever was half done."""
        assert self.fast is not None
        try:
            if clean:
                self.u32[_OWNER_W] = 0
        finally:
            # Even if another thread closed the segment under us (views released): the
            # mutex must go back, or every other process would wait for it.
            self.fast.unlock()


_OWNER_W = L.H["lock_owner"] >> 2


def read_geometry(u32: memoryview, u64: memoryview) -> L.Geometry:
    """The region table recorded in a mapped segment's header."""
    H = L.H
    fields = {f: u32[H[f] >> 2] for f in L.Geometry.__dataclass_fields__ if f != "segment_size"}
    return L.Geometry(segment_size=u64[H["segment_size"] >> 3], **fields)


def check_room(size: int) -> None:
    """Fail with one clear line if /dev/shm cannot hold ``size`` more bytes."""
    try:
        st = os.statvfs(SHM_DIR)
    except OSError as exc:
        raise SegmentError(f"{SHM_DIR} is not usable: {exc.strerror}") from None
    free = st.f_bavail * st.f_frsize
    if free < size:
        raise SegmentError(
            f"{SHM_DIR} has {free // (1 << 20)} MiB free, the channel layer segment needs "
            f"{size // (1 << 20)} MiB: free space in {SHM_DIR} or lower the layer's 'size'"
        )

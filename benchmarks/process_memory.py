"""Resident memory of a running Triton server, read from /proc (Linux).

The models live in the Python backend's stub processes (one per model instance), which the
server forks, so the server's own VmRSS misses most of it: both are reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class Memory:
    server_bytes: int  # tritonserver itself
    backends_bytes: int  # every process it started (the backend stubs), summed
    backends: int  # how many of those there were

    @property
    def total_bytes(self) -> int:
        return self.server_bytes + self.backends_bytes


def rss_bytes(pid: int, proc: Path = PROC) -> int:
    """VmRSS of ``pid``; 0 when it has none (a kernel thread) or has exited."""
    try:
        status = (proc / str(pid) / "status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024  # the kernel writes kB
    return 0


def descendants(pid: int, proc: Path = PROC) -> list[int]:
    """Every process below ``pid`` (children, their children, ...)."""
    children: dict[int, list[int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        # The command name is in parentheses and may hold spaces; the parent pid follows
        # the state field after the last ')'.
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        below = children.get(todo.pop(), [])
        found += below
        todo += below
    return found


def memory_of(pid: int, proc: Path = PROC) -> Memory:
    below = descendants(pid, proc)
    return Memory(rss_bytes(pid, proc), sum(rss_bytes(p, proc) for p in below), len(below))


def listening_pid(port: int, proc: Path = PROC) -> int | None:
    """The process listening on TCP ``port`` (IPv4 or IPv6), if this user may see it."""
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            rows = (proc / "net" / table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            fields = row.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{inode}]")
    if not inodes:
        return None
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if fd.readlink().as_posix() in inodes:
                    return int(entry.name)
        except (FileNotFoundError, PermissionError, ProcessLookupError, OSError):
            continue
    return None

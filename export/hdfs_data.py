"""Readers for DeepLog's preprocessed HDFS release (``../shared/data/hdfs``).

Keys there are the event ids E1..E29 of loghub's full HDFS template set (the 2k sample's
template file is numbered differently, E1..E14), so the 29 templates are listed here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from export.contract.vocab import KeyVocabulary

HDFS_EVENTS = {
    "E1": "<*> Adding an already existing block <*>",
    "E2": "<*> Verification succeeded for <*>",
    "E3": "<*> Served block <*> to <*>",
    "E4": "<*> Got exception while serving <*> to <*>",
    "E5": "<*> Receiving block <*> src: <*> dest: <*>",
    "E6": "<*> Received block <*> src: <*> dest: <*> of size <*>",
    "E7": "<*> writeBlock <*> received exception <*>",
    "E8": "<*> PacketResponder <*> for block <*> Interrupted.",
    "E9": "<*> Received block <*> of size <*> from <*>",
    "E10": "<*> PacketResponder <*> Exception <*>",
    "E11": "<*> PacketResponder <*> for block <*> terminating",
    "E12": "<*> Exception writing block <*> to mirror <*>",
    "E13": "<*> Receiving empty packet for block <*>",
    "E14": "<*> Exception in receiveBlock for block <*>",
    "E15": "<*> Changing block file offset of block <*> from <*> to <*> meta file offset to <*>",
    "E16": "<*> Transmitted block <*> to <*>",
    "E17": "<*> Failed to transfer <*> to <*> got <*>",
    "E18": "<*> Starting thread to transfer block <*> to <*>",
    "E19": "<*> Reopen Block <*>",
    "E20": "<*> Unexpected error trying to delete block <*> BlockInfo not found in volumeMap.",
    "E21": "<*> Deleting block <*> file <*>",
    "E22": "<*> BLOCK* NameSystem.allocateBlock: <*>",
    "E23": "<*> BLOCK* NameSystem.delete: <*> is added to invalidSet of <*>",
    "E24": "<*> BLOCK* Removing block <*> from neededReplications as it does not belong to any "
    "file.",
    "E25": "<*> BLOCK* ask <*> to replicate <*> to <*>",
    "E26": "<*> BLOCK* NameSystem.addStoredBlock: blockMap updated: <*> is added to <*> size <*>",
    "E27": "<*> BLOCK* NameSystem.addStoredBlock: Redundant addStoredBlock request for <*> on <*>",
    "E28": "<*> BLOCK* NameSystem.addStoredBlock: addStoredBlock request received for <*> on <*> "
    "size <*> But it does not belong to any file.",
    "E29": "<*> PendingReplicationMonitor timed out block <*>",
}

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


class DataMissing(FileNotFoundError):
    """The shared reference data is not where the project expects it."""


def data_dir(root: Path | None = None) -> Path:
    folder = (root or DEFAULT_DATA) / "hdfs"
    if not folder.is_dir():
        raise DataMissing(f"HDFS reference data not found at {folder} (expected ../shared/data)")
    return folder


def read_key_sessions(path: Path) -> Iterator[list[str]]:
    """Sessions of a DeepLog key file, as event ids ('5' -> 'E5'); blank lines are skipped."""
    with open(path) as f:
        for line in f:
            keys = line.split()
            if keys:
                yield [f"E{k}" for k in keys]


def read_labelled_sessions(path: Path) -> Iterator[tuple[list[str], int]]:
    """``Sequence,label`` rows of robust_log_train.csv as (event ids, label)."""
    with open(path) as f:
        header = f.readline().strip()
        if header != "Sequence,label":
            raise ValueError(f"{path}: unexpected header {header!r}")
        for line in f:
            sequence, _, label = line.strip().rpartition(",")
            yield [f"E{k}" for k in sequence.split()], int(label)


def hdfs_vocabulary(sessions: list[list[str]]) -> KeyVocabulary:
    """Vocabulary of the event ids that occur in the training sessions, in numeric order."""
    seen = sorted({k for s in sessions for k in s}, key=lambda e: int(e[1:]))
    return KeyVocabulary(names=tuple(seen), templates=tuple(HDFS_EVENTS[e] for e in seen))

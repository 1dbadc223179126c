"""MXNet RecordIO (``.rec`` + ``.idx``) read and write, byte-identical to mxnet 1.x, without mxnet.

On-disk layout (dmlc-core ``RecordIOWriter``), all integers little-endian uint32:

    [magic 0xced7230a][lrec = cflag << 29 | length][length bytes][zero padding to a multiple of 4]

A record is written as one part (cflag 0) unless its bytes contain the magic word at a 4-byte-aligned
position: the writer then cuts the record there and drops those 4 bytes (parts: cflag 1 start, 2 middle,
3 end), and the reader puts the magic word back between parts. That escaping keeps a reader able to
resynchronise on the magic word. mxnet refuses records of 2**29 bytes or more, so do we.

The ``.idx`` file is text, one ``key<TAB>byte offset`` line per record, in write order. An image record
is an :class:`IRHeader` (struct ``IfQQ``: flag, label, id, id2; 24 bytes) followed by the image bytes;
``flag > 0`` means ``flag`` float32 labels follow the header and the label field is 0.

This module uses the standard library only (no torch, no numpy) so the optional mxnet lane can import it
next to mxnet 1.9.1 and numpy < 1.24.
"""

from __future__ import annotations

import numbers
import os
import struct
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import NamedTuple

from ..atomic import atomic_output
from ..errors import DataFormatError

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
MAX_RECORD_BYTES = (1 << 29) - 1  # the length field has 29 bits; mxnet's writer refuses more
_IR = struct.Struct("<IfQQ")
IR_SIZE = _IR.size  # 24
_WORD2 = struct.Struct("<II")


class IRHeader(NamedTuple):
    """Header of an image record. ``label`` is a float, or a tuple of floats when ``flag > 0``."""

    flag: int
    label: float | tuple[float, ...]
    id: int
    id2: int


def pack(header: IRHeader | Sequence, payload: bytes) -> bytes:
    """``mx.recordio.pack``: a numeric label gives ``flag = 0``; a sequence of labels gives
    ``flag = len(labels)``, label field 0 and the labels as float32 right after the header."""
    flag, label, rid, rid2 = header
    try:
        if isinstance(label, numbers.Number):
            return _IR.pack(0, float(label), rid, rid2) + bytes(payload)
        labels = [float(x) for x in label]
        extra = struct.pack(f"<{len(labels)}f", *labels)
        return _IR.pack(len(labels), 0.0, rid, rid2) + extra + bytes(payload)
    except (struct.error, OverflowError, TypeError, ValueError) as exc:
        raise DataFormatError(f"cannot pack IRHeader {tuple(header)!r}: {exc}") from exc


def unpack(record: bytes, source: str = "") -> tuple[IRHeader, bytes]:
    """``mx.recordio.unpack``: split a record into its :class:`IRHeader` and payload bytes."""
    where = f"{source}: " if source else ""
    if len(record) < IR_SIZE:
        raise DataFormatError(f"{where}record of {len(record)} bytes is shorter than the 24-byte IRHeader")
    flag, label, rid, rid2 = _IR.unpack_from(record, 0)
    if flag == 0:
        return IRHeader(0, label, rid, rid2), bytes(record[IR_SIZE:])
    end = IR_SIZE + 4 * flag
    if end > len(record):
        raise DataFormatError(
            f"{where}IRHeader flag {flag} announces {flag} float32 labels but the record has only "
            f"{len(record) - IR_SIZE} bytes after the header"
        )
    labels = struct.unpack_from(f"<{flag}f", record, IR_SIZE)
    return IRHeader(flag, labels, rid, rid2), bytes(record[end:])


def _aligned_magic_positions(record: bytes) -> list[int]:
    """Offsets of the magic word at 4-byte-aligned positions (where mxnet's writer cuts the record)."""
    found, pos = [], record.find(MAGIC_BYTES)
    while pos >= 0:
        if pos % 4 == 0:
            found.append(pos)
            pos = record.find(MAGIC_BYTES, pos + 4)
        else:
            pos = record.find(MAGIC_BYTES, pos + 1)
    return found


def frame(record: bytes) -> bytes:
    """The exact bytes mxnet's ``RecordIOWriter::WriteRecord`` emits for one record."""
    size = len(record)
    if size > MAX_RECORD_BYTES:
        raise DataFormatError(f"record of {size} bytes exceeds the RecordIO limit of 2**29 - 1 bytes")
    out, start = [], 0
    for i, cut in enumerate(_aligned_magic_positions(record)):
        # parts before the last start and end on aligned offsets, so they need no padding
        out += [MAGIC_BYTES, struct.pack("<I", (1 if i == 0 else 2) << 29 | (cut - start)), record[start:cut]]
        start = cut + 4
    out += [MAGIC_BYTES, struct.pack("<I", (3 if start else 0) << 29 | (size - start)), record[start:]]
    out.append(b"\0" * (-size % 4))
    return b"".join(out)


class RecordWriter:
    """Write ``.rec`` (+ ``.idx``) like ``mx.recordio.MXIndexedRecordIO(idx, rec, 'w')``.

    Atomic: bytes go to temporary files in the target folder, renamed onto the final names by a
    successful :meth:`close` (or ``with`` block); on error nothing is left under the final names.
    """

    def __init__(self, rec_path: str | os.PathLike, idx_path: str | os.PathLike | None = None) -> None:
        self.rec_path = Path(rec_path)
        self.idx_path = Path(idx_path) if idx_path is not None else None
        self._files = ExitStack()  # the temporary files; closing it renames them onto the final names
        try:
            self._rec = self._files.enter_context(atomic_output(self.rec_path, "wb"))
            self._idx = self._files.enter_context(atomic_output(self.idx_path, "w")) if self.idx_path else None
        except BaseException:
            self.abort()
            raise
        self._pos = 0
        self._keys: set[int] = set()

    def tell(self) -> int:
        """Byte offset the next record will start at."""
        return self._pos

    def write(self, record: bytes) -> int:
        """Append one record; returns its byte offset."""
        offset, data = self._pos, frame(bytes(record))
        self._rec.write(data)
        self._pos += len(data)
        return offset

    def write_idx(self, key: int, record: bytes) -> int:
        """Append one record and its ``key<TAB>offset`` index line; returns its byte offset."""
        if self._idx is None:
            raise DataFormatError(f"{self.rec_path}: write_idx needs an idx_path")
        key = int(key)
        if key in self._keys:
            raise DataFormatError(f"{self.idx_path}: key {key} written twice")
        self._keys.add(key)
        offset = self.write(record)
        self._idx.write(f"{key}\t{offset}\n")
        return offset

    def close(self) -> None:
        """Finish: flush both files and move them onto their final names."""
        self._files.close()

    def abort(self) -> None:
        """Drop everything written so far (idempotent); the final names are left untouched."""
        self._files.__exit__(DataFormatError, DataFormatError("aborted"), None)

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class RecordReader:
    """Random access (``read_idx``) and sequential ``scan`` over a ``.rec`` file, mxnet-compatible.

    ``idx_path`` defaults to the ``.rec`` path with suffix ``.idx``; when that file is missing the index
    is rebuilt by a scan (keys = the records' IRHeader ids when all are present and unique, else record
    ordinals 0..n-1) and written when ``write_index`` is true. The file is opened lazily and reopened after
    a fork (no handle in the pickled state), so a reader can go to DataLoader workers. Reads use
    ``os.pread``: no shared file position between threads or processes.
    """

    def __init__(self, rec_path: str | os.PathLike, idx_path: str | os.PathLike | None = None,
                 *, write_index: bool = False) -> None:
        self.rec_path = Path(rec_path)
        self.idx_path = Path(idx_path) if idx_path is not None else self.rec_path.with_suffix(".idx")
        if not self.rec_path.is_file():
            raise DataFormatError(f"{self.rec_path}: RecordIO file not found")
        self._size = self.rec_path.stat().st_size
        self._fd: int | None = None
        self._pid: int | None = None  # the process that opened _fd
        self.index_rebuilt = not self.idx_path.is_file()  # no index file: records found by a scan
        if not self.index_rebuilt:
            keys, offsets = _read_index_file(self.idx_path, self.rec_path, self._size)
            if not keys and self._size:  # a torn copy or an interrupted writer: "0 records" would be a lie
                raise DataFormatError(
                    f"{self.idx_path}: index file lists no record but {self.rec_path.name} holds {self._size} "
                    f"bytes; delete {self.idx_path.name} (the records are then found by a scan) or re-pack the set"
                )
        else:
            keys, offsets = self._index_by_scan()
            if write_index:
                with atomic_output(self.idx_path, "w") as fh:
                    fh.writelines(f"{k}\t{o}\n" for k, o in zip(keys, offsets, strict=True))
        self._set_index(keys, offsets)

    def _set_index(self, keys: array, offsets: array) -> None:
        order = sorted(range(len(keys)), key=keys.__getitem__)
        self._keys, self._offsets = keys, offsets
        self._sorted_keys = array("q", (keys[i] for i in order))
        self._sorted_offsets = array("q", (offsets[i] for i in order))
        for a, b in zip(self._sorted_keys, self._sorted_keys[1:], strict=False):
            if a == b:
                raise DataFormatError(f"{self.idx_path}: key {a} appears twice")

    def _index_by_scan(self) -> tuple[array, array]:
        ids, offsets = [], array("q")
        for offset, record in self.scan():
            offsets.append(offset)
            ids.append(_IR.unpack_from(record, 0)[2] if len(record) >= IR_SIZE else None)
        usable = None not in ids and len(set(ids)) == len(ids) and all(i < 2**63 for i in ids)
        return array("q", ids if usable else range(len(offsets))), offsets

    @property
    def keys(self) -> list[int]:
        """Keys in index-file order (as ``MXIndexedRecordIO.keys``)."""
        return self._keys.tolist()

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, numbers.Integral) and self._find(int(key)) is not None

    def _find(self, key: int) -> int | None:
        i = bisect_left(self._sorted_keys, key)
        if i < len(self._sorted_keys) and self._sorted_keys[i] == key:
            return self._sorted_offsets[i]
        return None

    def offset_of(self, key: int) -> int:
        offset = self._find(int(key))
        if offset is None:
            raise DataFormatError(f"{self.idx_path}: key {key} is not in the index ({len(self)} records)")
        return offset

    def read_idx(self, key: int) -> bytes:
        """The record stored under ``key`` (header + payload, as ``MXIndexedRecordIO.read_idx``)."""
        return self.read_at(self.offset_of(key))[0]

    def read_at(self, offset: int) -> tuple[bytes, int]:
        """The record starting at byte ``offset`` and the offset right after it."""
        fd, pos, parts = self._fileno(), offset, []
        while True:
            if pos + 8 > self._size:
                raise DataFormatError(
                    f"{self.rec_path}: truncated record header at byte offset {pos} "
                    f"(file has {self._size} bytes)"
                )
            magic, lrec = _WORD2.unpack(os.pread(fd, 8, pos))
            if magic != MAGIC:
                raise DataFormatError(
                    f"{self.rec_path}: no RecordIO magic at byte offset {pos} (found 0x{magic:08x}, expected "
                    f"0x{MAGIC:08x}): not a record boundary, or not a RecordIO file"
                )
            cflag, length = lrec >> 29, lrec & MAX_RECORD_BYTES
            if cflag > 3 or (cflag in (2, 3)) != bool(parts):
                raise DataFormatError(
                    f"{self.rec_path}: invalid continuation flag {cflag} at byte offset {pos} "
                    f"({'inside' if parts else 'at the start of'} a record)"
                )
            end = pos + 8 + length + (-length % 4)
            if end > self._size:
                raise DataFormatError(
                    f"{self.rec_path}: record part at byte offset {pos} claims {length} bytes but the file "
                    f"ends at byte {self._size} (truncated or corrupt)"
                )
            parts.append(os.pread(fd, length, pos + 8))
            pos = end
            if cflag in (0, 3):
                return b"".join(parts), pos
            parts.append(MAGIC_BYTES)  # the writer dropped it here

    def scan(self, start: int = 0) -> Iterator[tuple[int, bytes]]:
        """Yield ``(offset, record)`` for every record from byte ``start`` to the end of the file."""
        pos = start
        while pos < self._size:
            record, nxt = self.read_at(pos)
            yield pos, record
            pos = nxt

    def _fileno(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            flags = os.O_RDONLY | getattr(os, "O_BINARY", 0)
            self._fd, self._pid = os.open(self.rec_path, flags), os.getpid()
        return self._fd

    def close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = self._pid = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_fd"] = state["_pid"] = None
        return state

    def __del__(self) -> None:
        with suppress(Exception):  # at interpreter shutdown there is nothing useful to report
            self.close()

    def __enter__(self) -> RecordReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _read_index_file(idx_path: Path, rec_path: Path, rec_size: int) -> tuple[array, array]:
    keys, offsets = array("q"), array("q")
    with open(idx_path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            fields = raw.split()
            if not fields:
                continue
            if len(fields) != 2 or not fields[0].lstrip(b"-").isdigit() or not fields[1].isdigit():
                raise DataFormatError(
                    f"{idx_path}: line {lineno}: expected 'integer key<TAB>byte offset', got {raw[:80]!r}"
                )
            key, offset = int(fields[0]), int(fields[1])
            if not -(2**63) <= key < 2**63:
                raise DataFormatError(f"{idx_path}: line {lineno}: key {key} does not fit in 64 bits")
            keys.append(key)
            if not 0 <= offset <= rec_size - 8:
                raise DataFormatError(
                    f"{idx_path}: line {lineno}: byte offset {offset} is outside {rec_path} "
                    f"({rec_size} bytes)"
                )
            offsets.append(offset)
    return keys, offsets



def write_rec_dataset(
    out_dir: str | os.PathLike,
    encoded_images: Iterable[bytes],
    labels: Sequence[int],
    image_size: tuple[int, int] = (112, 112),
) -> Path:
    """Write an InsightFace training set ``out_dir/{train.rec, train.idx, property}``; returns train.rec.

    The layout of InsightFace's ``RecBuilder`` (recognition/common/rec_builder.py): image records with
    keys 1..N (``IRHeader(0, label, key, 0)`` + encoded image), grouped by identity in ascending label
    order (a stable sort is applied when ``labels`` are not sorted); then one record per identity whose
    labels are its image key range ``[first, end)``, no payload; then, last in the file, record 0 with
    labels ``[first identity key, end)`` and id2 = 1. arcface_torch reads images as keys
    ``1 .. label[0]-1``. ``property`` holds ``"num_classes,H,W"`` with num_classes = max label + 1.
    """
    try:
        labels = [int(x) for x in labels]
    except (TypeError, ValueError) as exc:
        raise DataFormatError(f"write_rec_dataset: labels must be integers ({exc})") from None
    if not labels or min(labels) < 0:
        raise DataFormatError("write_rec_dataset: need at least one image and labels >= 0")
    order = sorted(range(len(labels)), key=labels.__getitem__)
    images: Iterable[bytes] = encoded_images
    if order != list(range(len(labels))):  # only then hold all images in memory
        listed = list(encoded_images)
        images = [listed[i] for i in order] if len(listed) == len(labels) else listed
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spans: list[list[int]] = []  # [first key, end key) of each identity, in label order
    with RecordWriter(out / "train.rec", out / "train.idx") as writer:
        try:
            for key, (image, i) in enumerate(zip(images, order, strict=True), start=1):
                writer.write_idx(key, pack(IRHeader(0, labels[i], key, 0), image))
                if not spans or labels[order[spans[-1][0] - 1]] != labels[i]:
                    spans.append([key, key + 1])
                spans[-1][1] = key + 1
        except ValueError as exc:  # zip(strict=True): image and label counts differ
            raise DataFormatError(f"write_rec_dataset: {len(labels)} labels but a different number "
                                  f"of images ({exc})") from None
        first_identity = len(labels) + 1
        for key, span in enumerate(spans, start=first_identity):
            writer.write_idx(key, pack(IRHeader(0, tuple(span), key, 0), b""))
        writer.write_idx(0, pack(IRHeader(0, (first_identity, first_identity + len(spans)), 0, 1), b""))
    with atomic_output(out / "property", "w") as fh:
        fh.write(f"{max(labels) + 1},{int(image_size[0])},{int(image_size[1])}\n")
    return out / "train.rec"

"""The NNIA array format that nnInteractive's remote protocol carries in request and reply bodies.

    magic b"NNIA" | version 1 | codec (1 zstd, 2 lz4) | ndim | dtype name length | dtype name (ascii)
    | shape (ndim x int64 LE) | chunk count (uint32 LE) | per chunk: raw length, compressed length (uint64 LE)
    and the blosc2 frame

Reading checks every field against the bytes that are there and against the caller's size cap before it
allocates or decompresses anything: a header that lies about its shape, a chunk that claims more bytes than it
holds or than the array has room for, and a blosc2 frame whose own size disagrees are refused with
``ArrayFormatError`` (a one-line reason), never decoded into a crash or a huge allocation.
"""

from __future__ import annotations

import struct

import numpy as np

MAGIC = b"NNIA"
VERSION = 1
CODECS = {1: "zstd", 2: "lz4"}
#: dtypes an image or a segmentation may come in
DTYPES = ("bool", "uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64", "float16", "float32", "float64")
MAX_DIMS = 4
_CHUNK = 1 << 30  # blosc2 takes at most 2 GiB a call


class ArrayFormatError(ValueError):
    """A body that is not a well-formed NNIA array within the limits."""


def unpack(buffer: bytes, max_bytes: int) -> np.ndarray:
    """The array in ``buffer``; refused when malformed or when it would exceed ``max_bytes`` uncompressed."""
    import blosc2

    if len(buffer) < 8:
        raise ArrayFormatError("array body too short for an NNIA header")
    magic, version, codec, ndim, name_length = struct.unpack_from("<4sBBBB", buffer, 0)
    if magic != MAGIC:
        raise ArrayFormatError(f"bad magic {magic!r}: not an NNIA array")
    if version != VERSION:
        raise ArrayFormatError(f"NNIA version {version} is not supported (only {VERSION})")
    if codec not in CODECS:
        raise ArrayFormatError(f"unknown codec id {codec}")
    if not 1 <= ndim <= MAX_DIMS:
        raise ArrayFormatError(f"{ndim} dimensions: an array here has 1 to {MAX_DIMS}")
    offset = 8
    if len(buffer) < offset + name_length + 8 * ndim + 4:
        raise ArrayFormatError("array header truncated")
    name = buffer[offset:offset + name_length].decode("ascii", errors="replace")
    if name not in DTYPES:
        raise ArrayFormatError(f"dtype {name!r} is not one of {', '.join(DTYPES)}")
    offset += name_length
    shape = struct.unpack_from(f"<{ndim}q", buffer, offset)
    offset += 8 * ndim
    if any(side <= 0 for side in shape):
        raise ArrayFormatError(f"shape {list(shape)} has an empty or negative side")
    dtype = np.dtype(name)
    total = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    if total > max_bytes:
        raise ArrayFormatError(f"array of shape {list(shape)} {name} ({total} bytes) exceeds the limit of {max_bytes} bytes")
    (chunks,) = struct.unpack_from("<I", buffer, offset)
    offset += 4
    if chunks != -(-total // _CHUNK):
        raise ArrayFormatError(f"{chunks} chunks for {total} bytes (expected {-(-total // _CHUNK)})")
    out = np.empty(total // dtype.itemsize, dtype)
    view = out.view(np.uint8)
    written = 0
    for _ in range(chunks):
        if len(buffer) < offset + 16:
            raise ArrayFormatError("chunk header truncated")
        raw, packed = struct.unpack_from("<QQ", buffer, offset)
        offset += 16
        if raw > total - written or raw % dtype.itemsize:
            raise ArrayFormatError(f"chunk of {raw} bytes does not fit the array's remaining {total - written}")
        if packed > len(buffer) - offset:
            raise ArrayFormatError(f"chunk claims {packed} compressed bytes, {len(buffer) - offset} are there")
        frame = buffer[offset:offset + packed]
        try:
            declared, _, _ = blosc2.get_cbuffer_sizes(frame)
        except Exception:  # blosc2 raises several types for a frame that is not one
            raise ArrayFormatError("chunk is not a blosc2 frame") from None
        if declared != raw:
            raise ArrayFormatError(f"chunk header says {raw} bytes, its frame {declared}")
        try:
            blosc2.decompress2(frame, dst=view[written:written + raw])
        except Exception:
            raise ArrayFormatError("chunk does not decompress") from None
        written += raw
        offset += packed
    if written != total or offset != len(buffer):
        raise ArrayFormatError("body length does not match the array it declares")
    return out.reshape(shape)


def pack(array: np.ndarray) -> bytes:
    """``array`` as an NNIA body (zstd, no shuffle: segmentations compress best so)."""
    import blosc2

    array = np.ascontiguousarray(array)
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    name = array.dtype.name.encode("ascii")
    parts = [struct.pack(f"<4sBBBB{len(name)}s", MAGIC, VERSION, 1, array.ndim, len(name), name),
             struct.pack(f"<{array.ndim}q", *array.shape)]
    raw = memoryview(array.reshape(-1).view(np.uint8))  # type: ignore[arg-type]  # ndarray is a buffer
    count = -(-raw.nbytes // _CHUNK)
    parts.append(struct.pack("<I", count))
    for start in range(0, raw.nbytes, _CHUNK):
        chunk = raw[start:start + _CHUNK]
        frame = blosc2.compress2(chunk, typesize=array.dtype.itemsize, codec=blosc2.Codec.ZSTD, clevel=3,
                                 filters=[blosc2.Filter.NOFILTER])
        parts += [struct.pack("<QQ", len(chunk), len(frame)), frame]
    return b"".join(parts)

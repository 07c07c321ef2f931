"""Inspect an XLSX (a zip archive) before openpyxl opens it: refuse decompression bombs and XML tricks.

`check_xlsx(data)` reads only the zip's central directory plus the first bytes of each part, and raises
`UnsafeXlsx` (an `UnreadableFile`: the upload API answers 400 with its message, and nothing is ingested) if

* it is not a zip archive at all, or has more than `max_entries` parts;
* the parts would inflate to more than `max_uncompressed_bytes` in total;
* a part larger than `ratio_min_bytes` inflates more than `max_ratio` times its compressed size (sheet XML
  deflates ~5-30x; a bomb is made of one repeated byte and deflates ~1000x), or a non-empty part claims
  to be stored in zero bytes;
* a part is itself an archive (zip, gzip, bzip2, xz, zstd, 7z, rar): nothing in the platform opens
  nested archives, and they are the building block of recursive bombs;
* an XML part declares a DTD (`<!DOCTYPE`, which is where entities are defined: billion laughs, external
  entities). Office never writes one, so this refuses nothing genuine.

The sizes checked are the central directory's. They are binding: Python's `zipfile` (which openpyxl reads
through) never inflates a part past its declared size, and a part whose content disagrees with its
declared size or CRC fails to read. Overlapping parts (the "overlapping files" bomb) each count their full
size, so they hit the total cap.

Not checked, because they are harmless here: external links (`xl/externalLinks/`) and external
relationships (openpyxl never fetches anything, and it is opened with `keep_links=False`), VBA projects
(`keep_vba` is off), embedded OLE objects (never opened). Entity expansion is also bounded by the parser:
openpyxl uses defusedxml when it is installed, else the standard library's expat (>= 2.4 limits
entity amplification); the DTD check above makes that a second line of defence.
"""

from __future__ import annotations

import io
import zipfile
import zlib

from .files import UnreadableFile

MIB = 1024 * 1024

# magic numbers of archive formats (a part starting with one of these is a nested archive)
_ARCHIVE_MAGIC = (
    (b"PK\x03\x04", "zip"),
    (b"PK\x05\x06", "zip"),  # an empty zip
    (b"PK\x07\x08", "zip"),  # a spanned zip
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"7z\xbc\xaf\x27\x1c", "7z"),
    (b"Rar!\x1a\x07", "rar"),
)
_XML_SUFFIXES = (".xml", ".rels", ".vml")
_PROLOG_SCAN_BYTES = 64 * 1024


class UnsafeXlsx(UnreadableFile):
    """The XLSX looks like a decompression bomb or carries XML that could expand without bound."""


def check_xlsx(
    data: bytes,
    *,
    max_uncompressed_bytes: int = 200 * MIB,
    max_ratio: float = 100.0,
    ratio_min_bytes: int = 1 * MIB,
    max_entries: int = 10_000,
    allow_nested_archives: bool = False,
) -> None:
    """Raise `UnsafeXlsx` unless `data` is a zip archive that is safe to give openpyxl (see the module doc)."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as e:
        raise UnsafeXlsx(f"not an XLSX file: the zip archive is unreadable ({str(e)[:200]})") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > max_entries:
            raise UnsafeXlsx(f"not accepted: the XLSX archive has more than {max_entries} parts")
        total = 0
        for info in infos:
            if info.is_dir():
                continue
            total += info.file_size
            if total > max_uncompressed_bytes:
                raise UnsafeXlsx(
                    "not accepted: the XLSX would decompress to more than "
                    f"{max_uncompressed_bytes} bytes (possible decompression bomb)"
                )
            if info.file_size > 0 and info.compress_size == 0:
                raise UnsafeXlsx(f"not accepted: XLSX part {_name(info)} claims a compressed size of 0")
            if info.file_size > ratio_min_bytes and info.file_size > max_ratio * info.compress_size:
                ratio = info.file_size / info.compress_size
                raise UnsafeXlsx(
                    f"not accepted: XLSX part {_name(info)} decompresses {ratio:.0f} times its size "
                    f"(more than {max_ratio:g}x: possible decompression bomb)"
                )
        for info in infos:
            if info.is_dir() or info.file_size == 0:
                continue
            _check_part(zf, info, allow_nested_archives)


def _name(info: zipfile.ZipInfo) -> str:
    return repr(info.filename[:100])


def _check_part(zf: zipfile.ZipFile, info: zipfile.ZipInfo, allow_nested_archives: bool) -> None:
    is_xml = info.filename.lower().endswith(_XML_SUFFIXES)
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):  # what Excel and Sheets write
        raise UnsafeXlsx(
            f"not a readable XLSX: part {_name(info)} uses compression method {info.compress_type}"
        )
    try:
        with zf.open(info) as f:
            head = f.read(_PROLOG_SCAN_BYTES if is_xml else 8)
    except (
        zipfile.BadZipFile,
        zlib.error,
        RuntimeError,
        OSError,
        ValueError,
        EOFError,
    ) as e:
        # encrypted parts, unknown compression methods, corrupt data
        raise UnsafeXlsx(f"not a readable XLSX: part {_name(info)}: {str(e)[:200]}") from None
    if not allow_nested_archives:
        for magic, kind in _ARCHIVE_MAGIC:
            if head.startswith(magic):
                raise UnsafeXlsx(
                    f"not accepted: XLSX part {_name(info)} is a nested {kind} archive "
                    "(remove embedded files and save again)"
                )
    if is_xml and _declares_dtd(head, complete=len(head) >= info.file_size):
        raise UnsafeXlsx(f"not accepted: XLSX part {_name(info)} declares an XML DTD/entities")


def _declares_dtd(head: bytes, *, complete: bool) -> bool:
    """True if the XML prolog in `head` has a `<!DOCTYPE` (or cannot be seen to end within `head`).

    A DTD may only appear in the prolog, before the root element; the prolog is an XML declaration,
    comments, processing instructions and white space."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = head.decode("utf-16", errors="ignore")
    else:
        text = head.decode("utf-8", errors="ignore").lstrip("\ufeff")
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
        elif text.startswith("<?", i):
            end = text.find("?>", i + 2)
            if end < 0:
                return not complete  # an unterminated prolog: refuse unless the part ends here
            i = end + 2
        elif text.startswith("<!--", i):
            end = text.find("-->", i + 4)
            if end < 0:
                return not complete
            i = end + 3
        elif text.startswith("<!", i):
            return True  # <!DOCTYPE (in any case): the only other markup allowed in a prolog
        else:
            return False  # the root element (or not XML at all: openpyxl will say so)
    return not complete  # the prolog runs past what we read: refuse rather than guess

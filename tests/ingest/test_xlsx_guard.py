"""XLSX uploads are inspected before openpyxl opens them: real decompression bombs, nested archives and DTDs
are refused with a clear reason (an `UnreadableFile`, answered 400), normal workbooks still parse."""

from __future__ import annotations

import io
import pyexpat
import zipfile
from datetime import datetime
from xml.etree.ElementTree import ParseError

import pytest
from arrears_ingest.sources.files import UnreadableFile, read_upload, read_xlsx
from arrears_ingest.sources.xlsx_guard import MIB, UnsafeXlsx, _declares_dtd, check_xlsx
from openpyxl import Workbook, load_workbook

SHEET = "xl/worksheets/sheet1.xml"
SHEET_XML = (
    b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
    b'<row r="1"><c r="A1" t="inlineStr"><is><t>%s</t></is></c></row></sheetData></worksheet>'
)
BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lollollollollollollollollollol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
]>
<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>
<row r="1"><c r="A1" t="inlineStr"><is><t>&lol6;</t></is></c></row></sheetData></worksheet>"""


def workbook_bytes(rows: list[list[object]]) -> bytes:
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "Accounts"
    for r in rows:
        ws.append(r)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def rebuilt(
    base: bytes, replace: dict[str, bytes] | None = None, add: dict[str, bytes] | None = None
) -> bytes:
    """`base` with some parts replaced or added, each deflated at the maximum level."""
    replace, add = replace or {}, add or {}
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(base)) as src,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z,
    ):
        for info in src.infolist():
            z.writestr(info.filename, replace.get(info.filename, src.read(info)))
        for name, content in add.items():
            z.writestr(name, content)
    return out.getvalue()


NORMAL = workbook_bytes([["Account ID", "Balance", "Due Date"], ["A-1", 12.5, datetime(2025, 3, 1)]])


def test_a_normal_workbook_passes_and_parses() -> None:
    check_xlsx(NORMAL)
    assert read_xlsx(NORMAL) == [["Account ID", "Balance", "Due Date"], ["A-1", "12.5", "2025-03-01"]]


def test_a_large_genuine_sheet_is_not_taken_for_a_bomb() -> None:
    """20,000 account rows: sheet XML of several MB, deflating ~15x, far below the ratio cap."""
    rows: list[list[object]] = [["Account ID", "Name", "Phone", "Balance", "Due Date"]]
    rows += [
        [f"A-{i}", "Jane Doe", "+15555550100", 100 + i / 100, datetime(2025, 1, 1)] for i in range(20_000)
    ]
    data = workbook_bytes(rows)
    check_xlsx(data)
    assert len(read_xlsx(data)) == 20_001


def test_a_sheet_of_repeated_bytes_is_refused_by_its_ratio() -> None:
    """A 50 MiB sheet of one repeated character deflates to ~50 kB: ~1000x."""
    bomb = rebuilt(NORMAL, replace={SHEET: SHEET_XML % (b"A" * (50 * MIB))})
    assert len(bomb) < 200_000
    with pytest.raises(UnsafeXlsx, match=r"part 'xl/worksheets/sheet1.xml' decompresses \d+ times its size"):
        check_xlsx(bomb)
    with pytest.raises(UnreadableFile, match="possible decompression bomb"):
        read_upload(bomb, filename="pme.xlsx", content_type=None)


def test_a_huge_zero_filled_part_is_refused() -> None:
    """300 MiB of zeros in one part, streamed into the archive (a ~300 kB file)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        with zipfile.ZipFile(io.BytesIO(NORMAL)) as src:
            for info in src.infolist():
                z.writestr(info.filename, src.read(info))
        with z.open("xl/media/zeros.bin", "w") as f:
            chunk = bytes(MIB)
            for _ in range(300):
                f.write(chunk)
    bomb = out.getvalue()
    assert len(bomb) < 1_000_000
    with pytest.raises(UnsafeXlsx, match=f"decompress to more than {200 * MIB} bytes"):
        check_xlsx(bomb)
    # with a larger total cap it is still refused, on its ratio
    with pytest.raises(UnsafeXlsx, match="'xl/media/zeros.bin' decompresses"):
        check_xlsx(bomb, max_uncompressed_bytes=1024 * MIB)


def test_many_small_parts_cannot_slip_under_the_ratio_check() -> None:
    """250 parts of 1 MiB of zeros (each under the 1 MiB ratio floor): the total cap refuses them."""
    bomb = rebuilt(NORMAL, add={f"xl/media/z{i}.bin": bytes(MIB) for i in range(250)})
    with pytest.raises(UnsafeXlsx, match="decompress to more than"):
        check_xlsx(bomb)
    with pytest.raises(UnsafeXlsx, match="more than 100 parts"):
        check_xlsx(bomb, max_entries=100)


def test_not_a_zip_and_corrupt_zips_are_refused() -> None:
    with pytest.raises(UnsafeXlsx, match="not an XLSX file"):
        check_xlsx(b"PK\x03\x04" + b"garbage" * 100)
    with pytest.raises(UnreadableFile, match="not an XLSX file"):
        read_upload(b"PK\x03\x04 not really", filename="pme.xlsx", content_type=None)
    # a part whose bytes were damaged after the central directory was written
    data = bytearray(rebuilt(NORMAL, replace={SHEET: SHEET_XML % (b"hello" * 1000)}))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as z:
        info = z.getinfo(SHEET)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start : start + 20] = b"\xff" * 20
    with pytest.raises(UnsafeXlsx, match="not a readable XLSX: part 'xl/worksheets/sheet1.xml'"):
        read_xlsx(bytes(data))
    # well-formed zip, malformed sheet XML: a 400 with the parser's reason, not a 500
    broken = rebuilt(NORMAL, replace={SHEET: SHEET_XML.replace(b"</sheetData>", b"") % b"x"})
    with pytest.raises(UnreadableFile, match="not a readable XLSX"):
        read_xlsx(broken)


def test_nested_archives_are_refused() -> None:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.txt", b"hello")
    bomb = rebuilt(NORMAL, add={"xl/embeddings/oleObject1.bin": inner.getvalue()})
    with pytest.raises(UnsafeXlsx, match="'xl/embeddings/oleObject1.bin' is a nested zip archive"):
        check_xlsx(bomb)
    gz = rebuilt(NORMAL, add={"xl/media/x.dat": b"\x1f\x8b\x08\x00" + b"\x00" * 20})
    with pytest.raises(UnsafeXlsx, match="nested gzip archive"):
        check_xlsx(gz)
    check_xlsx(bomb, allow_nested_archives=True)


def test_a_dtd_is_refused_before_any_entity_is_expanded() -> None:
    bomb = rebuilt(NORMAL, replace={SHEET: BILLION_LAUGHS})
    with pytest.raises(UnsafeXlsx, match="'xl/worksheets/sheet1.xml' declares an XML DTD/entities"):
        read_upload(bomb, filename=None, content_type=None)
    # an external entity (would read a local file with a careless parser)
    xxe = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><worksheet>&e;</worksheet>'
    with pytest.raises(UnsafeXlsx, match="declares an XML DTD"):
        check_xlsx(rebuilt(NORMAL, replace={"xl/workbook.xml": xxe}))


def test_entity_expansion_is_bounded_even_without_the_guard() -> None:
    """The second line of defence: openpyxl's parser (defusedxml when installed, else expat >= 2.4 with its
    amplification limit) refuses the billion laughs on its own."""
    major, minor, _ = pyexpat.version_info
    assert (major, minor) >= (2, 4), pyexpat.EXPAT_VERSION
    with pytest.raises(ParseError, match="amplification"):
        wb = load_workbook(io.BytesIO(rebuilt(NORMAL, replace={SHEET: BILLION_LAUGHS})), read_only=True)
        try:
            list(wb.worksheets[0].iter_rows(values_only=True))
        finally:
            wb.close()


@pytest.mark.parametrize(
    ("xml", "refused"),
    [
        (b'<?xml version="1.0"?>\n<worksheet/>', False),
        (b"\xef\xbb\xbf<?xml version='1.0'?><!-- c --><?pi x?>\n<root><![CDATA[<!DOCTYPE]]></root>", False),
        (b'<?xml version="1.0"?><!-- <!DOCTYPE in a comment --><root/>', False),
        (b'<?xml version="1.0"?>\n<!doctype x SYSTEM "http://example.com/x.dtd"><root/>', True),
        ('<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE x><root/>'.encode("utf-16"), True),
        (b"<!--" + b"-" * 100 + b"-->", False),
    ],
)
def test_dtd_detection_in_the_prolog(xml: bytes, refused: bool) -> None:
    assert _declares_dtd(xml, complete=True) is refused


def test_a_prolog_longer_than_the_scan_is_refused() -> None:
    """A DTD hidden after 64 kB of comments cannot be seen: the part is refused, not guessed at."""
    xml = b'<?xml version="1.0"?>' + b"<!--" + b"x" * 70_000 + b"--><!DOCTYPE x><root/>"
    with pytest.raises(UnsafeXlsx, match="declares an XML DTD"):
        check_xlsx(rebuilt(NORMAL, replace={SHEET: xml}))

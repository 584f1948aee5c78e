"""A streaming XLSX writer: the workbook leaves as it is written, sheet by sheet, row by row,
in constant memory and without a temporary file.

openpyxl's write-only mode keeps its promise of constant memory by spooling each sheet to a
temporary file and zipping it at save(): nothing could be sent before the last row, and a
year's export would sit on disk. An XLSX file is a zip of a few small XML parts; the one that
grows (a sheet) is written here straight into a zip stream (data descriptors, no seeking).
Cells are numbers or inline strings, which every spreadsheet program reads; openpyxl and
LibreOffice read these files back in the tests.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any
from xml.sax.saxutils import escape, quoteattr

MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
_XML = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
# Compression is most of the cost of a big sheet; level 1 keeps ~90 % of level 6's gain here.
_LEVEL = 1


class _Sink:
    """A write-only file for ZipFile that hands out what was written since the last take()."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        data, self._parts = b"".join(self._parts), []
        return data


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "<c/>"
    if isinstance(value, bool):
        return f'<c t="b"><v>{int(value)}</v></c>'
    if isinstance(value, int | float):
        return f"<c><v>{value}</v></c>"
    text = escape(str(value))
    space = ' xml:space="preserve"' if text[:1].isspace() or text[-1:].isspace() else ""
    return f'<c t="inlineStr"><is><t{space}>{text}</t></is></c>'


# Markup characters, and whitespace at either end of a text (which readers would trim), in a
# row's texts joined by \x1f: only such rows need a function call per cell.
_CAREFUL = ("&", "<", ">", *(f"{a}{b}" for c in " \t\n\r" for a, b in (("\x1f", c),
                                                                        (c, "\x1f"))))
# XML 1.0 has no place for control characters: they leave the encoded sheet in one pass
# (UTF-8 never uses these bytes inside a multi-byte character).
_CONTROL_BYTES = bytes([*range(0, 9), 11, 12, *range(14, 32)])


def row_xml(values: Sequence[Any]) -> str:
    """One sheet row; cells are placed in order (an empty cell keeps its place)."""
    texts = "\x1f" + "\x1f".join([v for v in values if v.__class__ is str]) + "\x1f"
    if any(mark in texts for mark in _CAREFUL):
        return "<row>" + "".join(map(_cell, values)) + "</row>"
    return "<row>" + "".join([
        f'<c t="inlineStr"><is><t>{v}</t></is></c>' if v.__class__ is str and v
        else "<c/>" if v is None or v == ""
        else f"<c><v>{v}</v></c>" if v.__class__ is int
        else _cell(v)
        for v in values]) + "</row>"


class Sheet:
    """A sheet to write: its name, and its rows (each a sequence of cells), lazily."""

    def __init__(self, name: str, rows: Iterable[Sequence[Any]],
                 widths: Sequence[float] = ()) -> None:
        self.name = name[:31]  # Excel's limit
        self.rows = rows
        self.widths = widths


def stream(sheets: Sequence[Sheet], chunk_rows: int = 500) -> Iterator[bytes]:
    """The workbook's bytes, in pieces, while the sheets' rows are produced."""
    sink = _Sink()
    # A sink that cannot seek or tell: ZipFile writes data descriptors after each part.
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED,
                         compresslevel=_LEVEL) as archive:
        for name, content in _package_parts(sheets):
            archive.writestr(name, content)
        yield sink.take()
        for number, sheet in enumerate(sheets, start=1):
            with archive.open(f"xl/worksheets/sheet{number}.xml", "w",
                              force_zip64=True) as part:
                yield from _write_sheet(part, sink, sheet, chunk_rows)
    yield sink.take()


def _write_sheet(part: IO[bytes], sink: _Sink, sheet: Sheet, chunk_rows: int
                 ) -> Iterator[bytes]:
    columns = "".join(f'<col min="{i}" max="{i}" width="{w}" customWidth="1"/>'
                      for i, w in enumerate(sheet.widths, start=1))
    part.write((f'{_XML}<worksheet xmlns="{_NS}">'
                + (f"<cols>{columns}</cols>" if columns else "")
                + "<sheetData>").encode())
    pending: list[str] = []
    for values in sheet.rows:
        pending.append(row_xml(values))
        if len(pending) >= chunk_rows:
            part.write("".join(pending).encode().translate(None, _CONTROL_BYTES))
            pending.clear()
            yield sink.take()
    part.write(("".join(pending) + "</sheetData></worksheet>").encode()
               .translate(None, _CONTROL_BYTES))


def _package_parts(sheets: Sequence[Sheet]) -> list[tuple[str, str]]:
    count = len(sheets)
    overrides = "".join(
        f'<Override PartName="/xl/worksheets/sheet{n}.xml" ContentType="application/'
        'vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
        for n in range(1, count + 1))
    content_types = (
        f'{_XML}<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/'
        'vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml" ContentType="application/'
        'vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
        '<Override PartName="/xl/styles.xml" ContentType="application/'
        'vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
        f"{overrides}</Types>")
    root_rels = (
        f'{_XML}<Relationships xmlns="{_PKG_REL_NS}"><Relationship Id="rId1" Type="'
        'http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
        'Target="xl/workbook.xml"/></Relationships>')
    sheet_list = "".join(f'<sheet name={quoteattr(s.name)} sheetId="{n}" r:id="rId{n}"/>'
                         for n, s in enumerate(sheets, start=1))
    workbook = (f'{_XML}<workbook xmlns="{_NS}" xmlns:r="{_REL_NS}">'
                f"<sheets>{sheet_list}</sheets></workbook>")
    sheet_rels = "".join(
        f'<Relationship Id="rId{n}" Type="{_REL_NS}/worksheet" '
        f'Target="worksheets/sheet{n}.xml"/>' for n in range(1, count + 1))
    workbook_rels = (
        f'{_XML}<Relationships xmlns="{_PKG_REL_NS}">{sheet_rels}'
        f'<Relationship Id="rId{count + 1}" Type="{_REL_NS}/styles" Target="styles.xml"/>'
        "</Relationships>")
    styles = (f'{_XML}<styleSheet xmlns="{_NS}">'
              '<fonts count="1"><font><sz val="11"/><name val="Calibri"/></font></fonts>'
              '<fills count="2"><fill><patternFill patternType="none"/></fill>'
              '<fill><patternFill patternType="gray125"/></fill></fills>'
              '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border>'
              "</borders>"
              '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/>'
              "</cellStyleXfs>"
              '<cellXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" '
              'xfId="0"/></cellXfs>'
              '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/>'
              "</cellStyles></styleSheet>")
    return [("[Content_Types].xml", content_types), ("_rels/.rels", root_rels),
            ("xl/workbook.xml", workbook), ("xl/_rels/workbook.xml.rels", workbook_rels),
            ("xl/styles.xml", styles)]

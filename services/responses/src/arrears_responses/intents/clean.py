"""The customer's own words in a reply: email quoted history, signatures and mail-client footers removed.

Quote headers in the languages we send in (Gmail `On … wrote:` / `El … escribió:`, Outlook `From:`/`De:`
blocks and `-----Original Message-----`), `>` lines, the `-- ` signature separator and client footers
(`Sent from my iPhone`, `Enviado desde mi …`, `Get Outlook for …`, confidentiality notices) end the new
text. SMS has none of these, so cleaning an SMS changes nothing but whitespace."""

from __future__ import annotations

import re

# lines that end the customer's text wherever they are
_CUT = re.compile(
    r"^(?:on .{3,200} wrote:?|el .{3,200} escribi[oó]:?|le .{3,200} a [ée]crit ?:?|"
    r".{0,200}[@>].{0,120}(?:wrote|escribi[oó]):|"  # a quote header wrapped over two lines
    r"-{2,} ?(?:original message|mensaje original|forwarded message|mensaje reenviado) ?-{2,}|_{5,}|-{5,}|"
    r"sent from (?:my|mail|outlook|yahoo).*|enviado desde (?:mi|outlook|yahoo|correo).*|"
    r"get outlook for .*|obtener outlook para .*|descargar outlook para .*|"
    r"(?:confidentiality notice|aviso de confidencialidad)\b.*|--|-- )\s*$",
    re.I,
)
# an Outlook / Apple header block: a "From:" line followed within three lines by another header line
_HEADER = re.compile(r"^(?:from|de|sent|enviado(?: el)?|to|para|subject|asunto|date|fecha|cc): .+$", re.I)
_HEADER_START = re.compile(r"^(?:from|de): .+$", re.I)
_SPACE = re.compile(r"\s+")


def reply_text(body: str) -> str:
    """The new text of a reply: everything before the first quote header or signature, `>` lines
    dropped, whitespace collapsed. A reply written under the quote (bottom-posting) is the unquoted text
    after it."""
    lines = body.replace("\r\n", "\n").split("\n")
    top = _new_text(lines)
    if top:
        return top
    quoted = [i for i, line in enumerate(lines) if line.strip().startswith(">")]
    return _new_text(lines[quoted[-1] + 1 :]) if quoted else ""


def _header_block(lines: list[str], i: int) -> bool:
    if not _HEADER_START.match(lines[i].strip()):
        return False
    following = [x.strip() for x in lines[i + 1 : i + 4] if x.strip()]
    return any(_HEADER.match(x) for x in following)


def _new_text(lines: list[str]) -> str:
    kept: list[str] = []
    for i, line in enumerate(lines):
        if _header_block(lines, i):
            break
        stripped = line.strip()
        if _CUT.match(stripped):
            # a header wrapped over two lines ("On Tue, … Acme <" / "billing@acme.example> wrote:")
            if kept and re.match(r"(?:on|el|le) ", kept[-1], re.I) and not _CUT.match(kept[-1]):
                if re.search(r"\d{4}|\d:\d\d", kept[-1]):
                    kept.pop()
            break
        if stripped.startswith(">"):
            continue
        kept.append(stripped)
    return _SPACE.sub(" ", " ".join(kept)).strip()

"""Raw token pieces (`Ġhas`, `ĠcafÃ©`, `▁the`, `##ing`) to the text they stand for, for display.

Tokenizers write pieces in one of a few schemes:

- `byte_level` (GPT-2, LLaMA-3, Qwen2, SmolLM2): every UTF-8 byte is mapped to one printable
  character (`bytes_to_unicode`: a space is `Ġ`, a newline `Ċ`, `é` is the two bytes `Ã©`);
- `sentencepiece` (LLaMA-2, Mistral, T5): `▁` is a space, `<0xNN>` a raw byte (byte fallback);
- `wordpiece` (BERT, ELECTRA): `##` starts a piece that continues a word;
- `plain`: none of these; the piece is shown as it is.

A byte-level piece can hold part of a multi-byte character (`æĹ` is two of the three bytes of
`日`). Decoded along with its sequence, such a piece shows every character its bytes belong to
(both pieces of `日` show `日`, as the tokenizers' own offsets do); decoded alone it shows what
decodes and `�` for the rest (`errors="replace"`).

Labels come from the pieces alone, never from the text they were cut from: a result scored now
(`vz explain`) and one read back from a store, which keeps no character offsets (`vz show`), read
the same. They show the text as the tokenizer normalised it: an uncased WordPiece tokenizer
lowercases and strips accents, so MiniLM's `Café` reads `cafe`.

Display text has its leading spaces stripped (words show without the space before them),
newlines and tabs written as `\\n` and `\\t`, and a piece made only of spaces as `␣`.
"""

from __future__ import annotations

import codecs
import re
from collections import Counter
from collections.abc import Sequence
from functools import cache
from typing import Literal

__all__ = [
    "Scheme",
    "decode_piece",
    "display_text",
    "guess_scheme",
    "joined_piece",
    "sequence_texts",
    "span_text",
    "token_text",
    "vocabulary_scheme",
]

Scheme = Literal["byte_level", "sentencepiece", "wordpiece", "plain"]

_BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")
_ESCAPES = str.maketrans({"\n": "\\n", "\t": "\\t", "\r": "\\r"})


@cache
def _byte_decoder() -> dict[str, int]:
    """Return the inverse of GPT-2's `bytes_to_unicode`: printable character -> byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = list(printable)
    shifted = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + shifted)  # bytes that would print badly move past Latin-1: ' ' -> 'Ġ'
            shifted += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


def _byte_level_bytes(piece: str) -> bytes | None:
    """Return the bytes a byte-level piece stands for, or None if it is not one (e.g. a special token)."""
    table = _byte_decoder()
    if not all(c in table for c in piece):
        return None
    return bytes(table[c] for c in piece)


def _piece_bytes(piece: str, scheme: Scheme) -> bytes:
    """Return the UTF-8 bytes of one piece in `scheme`, word-start markers as a leading space."""
    if scheme == "byte_level":
        raw = _byte_level_bytes(piece)
        return piece.encode() if raw is None else raw
    if scheme == "sentencepiece":
        fallback = _BYTE_FALLBACK.fullmatch(piece)
        return bytes([int(fallback.group(1), 16)]) if fallback else piece.replace("▁", " ").encode()
    if scheme == "wordpiece" and piece.startswith("##") and len(piece) > 2:
        return piece[2:].encode()
    return piece.encode()


def _valid_utf8(data: bytes, cut: bool) -> bool:
    """Return whether `data` is UTF-8; with `cut`, a character may be cut at either end (a truncated sequence)."""
    start = 0
    while cut and start < min(len(data), 3) and 0x80 <= data[start] < 0xC0:  # the tail of a cut character
        start += 1
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data[start:], final=not cut)
    except UnicodeDecodeError:
        return False
    return True


def _looks_special(piece: str) -> bool:
    """Return whether a piece is bracketed like a special token (`<|im_start|>`, `[CLS]`), in no scheme's alphabet."""
    return len(piece) > 2 and piece[0] in "<[" and piece[-1] in ">]"


def guess_scheme(pieces: Sequence[str]) -> Scheme:
    """Return the scheme that `pieces` (one sequence) are written in.

    Special tokens (bracketed: `<|im_start|>`, `[CLS]`) are left out. Byte-level needs every
    other piece in the byte alphabet, at least one non-ASCII character (`Ġ`, `Ċ`, `Ã©`), and the
    pieces' bytes joined to be valid UTF-8 (a sequence of several pieces with a `Ġ` or `Ċ` may cut
    a character at either end, as truncation does). A WordPiece `##é` or `café` is not valid UTF-8
    as bytes, so it is not taken for byte-level; a lone piece holding part of a character is not
    either, and shows as written.
    """
    if any(p.startswith("▁") or _BYTE_FALLBACK.fullmatch(p) for p in pieces):
        return "sentencepiece"
    words = [p for p in pieces if not _looks_special(p)]
    raw = [_byte_level_bytes(p) for p in words]
    if all(r is not None for r in raw) and any(not p.isascii() for p in words):
        # A cut character at either end (truncation) is allowed only beside a sure sign of the
        # scheme: a character of the moved range, such as `Ġ` (space) or `Ċ` (newline).
        sure = any("\u0100" <= c <= "\u0143" for p in words for c in p)
        if _valid_utf8(b"".join(r for r in raw if r is not None), cut=sure and len(words) > 1):
            return "byte_level"
    if any(p.startswith("##") and len(p) > 2 for p in pieces):
        return "wordpiece"
    return "plain"


def vocabulary_scheme(pieces: Sequence[str]) -> Scheme:
    """Return the scheme most of `pieces` (token types of one tokenizer, in no order) are written in.

    Each piece is guessed on its own and the commonest marked scheme wins, so a few pieces that
    happen to look like another scheme (a byte-level `##`) do not decide it.
    """
    votes = Counter(_piece_scheme(p) for p in pieces)
    votes.pop("plain", None)
    return votes.most_common(1)[0][0] if votes else "plain"


def _piece_scheme(piece: str) -> Scheme:
    """`guess_scheme([piece])`, without its byte-level test for an ASCII piece (it needs a non-ASCII
    character): most pieces of a vocabulary, and most of the time `vz aggregate` spent voting."""
    if not piece.isascii():
        return guess_scheme([piece])
    if _BYTE_FALLBACK.fullmatch(piece):
        return "sentencepiece"
    return "wordpiece" if piece.startswith("##") and len(piece) > 2 else "plain"


def display_text(text: str) -> str:
    """Return `text` as a label: leading spaces stripped, line breaks escaped, only-spaces as `␣`."""
    shown = text.lstrip(" ").translate(_ESCAPES)
    return shown if shown else "␣" * max(len(text), 1)


def decode_piece(piece: str, scheme: Scheme | None = None) -> str:
    """Return the text one piece stands for on its own, spaces kept (`scheme` guessed from the piece if not given)."""
    scheme = scheme or guess_scheme([piece])
    return _piece_bytes(piece, scheme).decode("utf-8", errors="replace")


def token_text(piece: str, scheme: Scheme | None = None) -> str:
    """Return the display text of one piece on its own: `Ġhas` -> `has`, `ĠcafÃ©` -> `café`, `##ing` -> `ing`."""
    return display_text(decode_piece(piece, scheme))


def span_text(pieces: Sequence[str], scheme: Scheme | None = None) -> str:
    """Return the display text of consecutive pieces decoded as one (a word), e.g. `caf`, `Ã©` -> `café`."""
    scheme = scheme or guess_scheme(pieces)
    return display_text(b"".join(_piece_bytes(p, scheme) for p in pieces).decode("utf-8", errors="replace"))


def joined_piece(pieces: Sequence[str], scheme: Scheme | None = None) -> str:
    """Return one piece in `scheme` that stands for `pieces` decoded together (a word's pieces as one
    type: `Ġcaf`, `Ã©` -> `ĠcafÃ©`; `play`, `##ing` -> `playing`), so `token_text(joined)` reads as
    `span_text(pieces)`."""
    scheme = scheme or guess_scheme(pieces)
    raw = b"".join(_piece_bytes(p, scheme) for p in pieces)
    if scheme == "byte_level":
        encoder = {b: c for c, b in _byte_decoder().items()}
        return "".join(encoder[b] for b in raw)
    text = raw.decode("utf-8", errors="replace")
    return text.replace(" ", "▁") if scheme == "sentencepiece" else text


def sequence_texts(pieces: Sequence[str], scheme: Scheme | None = None) -> list[str]:
    """Return the display text of every piece of one sequence: its decoded bytes, with every
    character that its bytes are part of (a piece holding part of `日` shows `日`)."""
    scheme = scheme or guess_scheme(pieces)
    decoded = _decode_with_neighbours([_piece_bytes(p, scheme) for p in pieces])
    return [display_text(shown) if shown else display_text(piece) for piece, shown in zip(pieces, decoded, strict=True)]


def _decode_with_neighbours(raw: Sequence[bytes]) -> list[str]:
    """Return, for each byte string of a sequence, the characters that any of its bytes belong to."""
    data = b"".join(raw)
    chars: list[tuple[int, int, str]] = []  # (first byte, end byte, character) over `data`
    i = 0
    while i < len(data):
        size = _utf8_size(data[i])
        try:
            chars.append((i, i + size, data[i : i + size].decode("utf-8")))
        except UnicodeDecodeError:  # a stray or cut byte
            size = 1
            chars.append((i, i + 1, "\ufffd"))
        i += size
    out, c, start = [], 0, 0
    for piece in raw:
        end = start + len(piece)
        while c < len(chars) and chars[c][1] <= start:
            c += 1
        k, shown = c, []
        while k < len(chars) and chars[k][0] < end:
            shown.append(chars[k][2])
            k += 1
        out.append("".join(shown))
        start = end
    return out


def _utf8_size(lead: int) -> int:
    """Return how many bytes a UTF-8 character starting with byte `lead` takes (1 for a stray byte)."""
    if lead >= 0xF0:
        return 4
    if lead >= 0xE0:
        return 3
    if lead >= 0xC0:
        return 2
    return 1

"""Fonts for labels in any script: fall back to an installed font that has the glyphs (CJK and others).

Matplotlib draws with its default font (DejaVu Sans), which has no CJK glyphs: such text renders
as boxes, with one warning per glyph and draw. `label_fonts(texts)` returns a family list that
matplotlib falls back along glyph by glyph (the default first, then installed fonts that cover
what it lacks); where no installed font has a glyph it warns once per process and silences
matplotlib's per-glyph warnings.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from functools import cache

__all__ = ["MissingGlyphsWarning", "label_fonts"]

# Tried first, in this order, when the default font lacks glyphs (then every other installed font).
PREFERRED = (
    "Noto Sans CJK JP",
    "Noto Sans CJK SC",
    "Noto Sans CJK TC",
    "Noto Sans CJK KR",
    "Source Han Sans",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Droid Sans Fallback",
    "IPAGothic",
    "TakaoGothic",
    "AR PL UMing CN",
    "Noto Sans",
    "Arial Unicode MS",
)
# Fonts that "have" every glyph only as a placeholder box: choosing them would hide the problem.
PLACEHOLDER_FONTS = ("Last Resort", "Last Resort High-Efficiency")
_GLYPH_WARNING = r"Glyph \d+ .* missing from font\(s\)"

_warned = False  # one warning per process about glyphs that no installed font has


class MissingGlyphsWarning(UserWarning):
    """Some characters of a figure's labels have no glyph in any installed font."""


@cache
def _charmap(path: str) -> frozenset[int]:
    from matplotlib.ft2font import FT2Font

    try:
        return frozenset(FT2Font(path).get_charmap())
    except (OSError, RuntimeError, ValueError):  # an unreadable font file: it has no glyphs for us
        return frozenset()


def _default_font() -> tuple[str, str]:
    """Return `(family name, file)` of the font matplotlib draws text with now."""
    import matplotlib
    from matplotlib import font_manager

    path = font_manager.findfont(font_manager.FontProperties(family=matplotlib.rcParams["font.family"]))
    return font_manager.get_font(path).family_name, path


def _installed_fonts() -> list[tuple[str, str]]:
    """Return `(family name, file)` of every installed font, the preferred families first."""
    from matplotlib import font_manager

    fonts = {f.fname: f.name for f in font_manager.fontManager.ttflist if f.name not in PLACEHOLDER_FONTS}
    rank = {name: k for k, name in enumerate(PREFERRED)}
    return sorted(((name, path) for path, name in fonts.items()), key=lambda f: rank.get(f[0], len(rank)))


def label_fonts(texts: Iterable[str]) -> list[str] | None:
    """Return font families that together have glyphs for `texts` (default first), or None if the default has all."""
    global _warned
    chars = {c for text in texts for c in text if c.isprintable() and not c.isspace()}
    default_name, default_path = _default_font()
    missing = {c for c in chars if ord(c) not in _charmap(default_path)}
    if not missing:
        return None
    families = [default_name]
    for name, path in _installed_fonts():
        covered = {c for c in missing if ord(c) in _charmap(path)}
        if covered and name not in families:
            families.append(name)
            missing -= covered
        if not missing:
            return families
    # Matplotlib would warn per glyph and per draw; one warning of ours says it all.
    warnings.filterwarnings("ignore", message=_GLYPH_WARNING, category=UserWarning)
    if not _warned:
        _warned = True
        sample = "".join(sorted(missing)[:12])
        warnings.warn(
            f"no installed font has glyphs for {len(missing)} character(s) of these labels, such as {sample!r};"
            " they render as boxes. Install a font that has them (for CJK: fonts-noto-cjk) and clear"
            " matplotlib's font cache. Said once per process.",
            MissingGlyphsWarning,
            stacklevel=3,
        )
    return families if len(families) > 1 else None

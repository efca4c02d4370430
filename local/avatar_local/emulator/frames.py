"""A still frame for Avatar V, drawn in pure Python: a silhouette and the avatar's name in a 5x7 bitmap font.

ffmpeg's drawtext needs a font file on the machine; a built-in bitmap font makes the frame (and the
name on it) the same everywhere, and writing a PNG needs only zlib.
"""

from __future__ import annotations

import hashlib
import struct
import zlib

Colour = tuple[int, int, int, int]

GLYPH_WIDTH = 5
GLYPH_HEIGHT = 7
_GLYPH_ROWS: dict[str, str] = {
    "A": ".###. #...# #...# ##### #...# #...# #...#",
    "B": "####. #...# #...# ####. #...# #...# ####.",
    "C": ".###. #...# #.... #.... #.... #...# .###.",
    "D": "####. #...# #...# #...# #...# #...# ####.",
    "E": "##### #.... #.... ####. #.... #.... #####",
    "F": "##### #.... #.... ####. #.... #.... #....",
    "G": ".###. #...# #.... #.### #...# #...# .####",
    "H": "#...# #...# #...# ##### #...# #...# #...#",
    "I": ".###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.",
    "J": "..### ...#. ...#. ...#. ...#. #..#. .##..",
    "K": "#...# #..#. #.#.. ##... #.#.. #..#. #...#",
    "L": "#.... #.... #.... #.... #.... #.... #####",
    "M": "#...# ##.## #.#.# #.#.# #...# #...# #...#",
    "N": "#...# #...# ##..# #.#.# #..## #...# #...#",
    "O": ".###. #...# #...# #...# #...# #...# .###.",
    "P": "####. #...# #...# ####. #.... #.... #....",
    "Q": ".###. #...# #...# #...# #.#.# #..#. .##.#",
    "R": "####. #...# #...# ####. #.#.. #..#. #...#",
    "S": ".#### #.... #.... .###. ....# ....# ####.",
    "T": "##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..",
    "U": "#...# #...# #...# #...# #...# #...# .###.",
    "V": "#...# #...# #...# #...# #...# .#.#. ..#..",
    "W": "#...# #...# #...# #.#.# #.#.# #.#.# .#.#.",
    "X": "#...# #...# .#.#. ..#.. .#.#. #...# #...#",
    "Y": "#...# #...# .#.#. ..#.. ..#.. ..#.. ..#..",
    "Z": "##### ....# ...#. ..#.. .#... #.... #####",
    "0": ".###. #...# #..## #.#.# ##..# #...# .###.",
    "1": "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.",
    "2": ".###. #...# ....# ...#. ..#.. .#... #####",
    "3": "##### ...#. ..#.. ...#. ....# #...# .###.",
    "4": "...#. ..##. .#.#. #..#. ##### ...#. ...#.",
    "5": "##### #.... ####. ....# ....# #...# .###.",
    "6": "..##. .#... #.... ####. #...# #...# .###.",
    "7": "##### ....# ...#. ..#.. .#... .#... .#...",
    "8": ".###. #...# #...# .###. #...# #...# .###.",
    "9": ".###. #...# #...# .#### ....# ...#. .##..",
    " ": "..... ..... ..... ..... ..... ..... .....",
    "-": "..... ..... ..... ##### ..... ..... .....",
    ".": "..... ..... ..... ..... ..... .##.. .##..",
    ",": "..... ..... ..... ..... .##.. ..#.. .#...",
    "'": "..#.. ..#.. .#... ..... ..... ..... .....",
    ":": "..... .##.. .##.. ..... .##.. .##.. .....",
    "/": "..... ....# ...#. ..#.. .#... #.... .....",
    "_": "..... ..... ..... ..... ..... ..... #####",
    "(": "...#. ..#.. .#... .#... .#... ..#.. ...#.",
    ")": ".#... ..#.. ...#. ...#. ...#. ..#.. .#...",
    "?": ".###. #...# ....# ...#. ..#.. ..... ..#..",
}
GLYPHS: dict[str, tuple[str, ...]] = {char: tuple(rows.split()) for char, rows in _GLYPH_ROWS.items()}


class Canvas:
    """RGBA pixels as one bytearray per row, so shapes are drawn with slice assignments (fast enough)."""

    def __init__(self, width: int, height: int, background: Colour) -> None:
        self.width = width
        self.height = height
        row = bytes(background) * width
        self.rows = [bytearray(row) for _ in range(height)]

    def fill_span(self, y: int, x0: int, x1: int, colour: Colour) -> None:
        x0, x1 = max(0, x0), min(self.width, x1)
        if 0 <= y < self.height and x0 < x1:
            self.rows[y][x0 * 4 : x1 * 4] = bytes(colour) * (x1 - x0)

    def fill_rect(self, x0: int, y0: int, x1: int, y1: int, colour: Colour) -> None:
        for y in range(max(0, y0), min(self.height, y1)):
            self.fill_span(y, x0, x1, colour)

    def fill_ellipse(self, cx: int, cy: int, rx: int, ry: int, colour: Colour) -> None:
        for y in range(max(0, cy - ry), min(self.height, cy + ry + 1)):
            dy = (y - cy) / ry
            half = int(rx * max(0.0, 1.0 - dy * dy) ** 0.5)
            self.fill_span(y, cx - half, cx + half + 1, colour)

    def draw_text(self, text: str, x: int, y: int, scale: int, colour: Colour) -> None:
        for index, char in enumerate(text):
            glyph = GLYPHS.get(char.upper(), GLYPHS["?"])
            left = x + index * (GLYPH_WIDTH + 1) * scale
            for row_index, row in enumerate(glyph):
                top = y + row_index * scale
                for col_index, cell in enumerate(row):
                    if cell == "#":
                        x0 = left + col_index * scale
                        self.fill_rect(x0, top, x0 + scale, top + scale, colour)

    def to_png(self) -> bytes:
        raw = b"".join(b"\x00" + bytes(row) for row in self.rows)
        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 6, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n"
            + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(raw, 1))
            + _chunk(b"IEND", b"")
        )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def text_width(text: str, scale: int) -> int:
    return max(0, len(text) * (GLYPH_WIDTH + 1) * scale - scale)


def colour_for(key: str, lightness: int) -> Colour:
    """A stable colour per avatar name, so two avatars are told apart even without reading the label."""
    digest = hashlib.sha256(key.encode()).digest()
    return (lightness + digest[0] % 96, lightness + digest[1] % 96, lightness + digest[2] % 96, 255)


def parse_hex_colour(value: str) -> Colour | None:
    digits = value.removeprefix("#")
    if len(digits) == 3:
        digits = "".join(char * 2 for char in digits)
    if len(digits) != 6:
        return None
    try:
        return (int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16), 255)
    except ValueError:
        return None


def fit_label(text: str, width: int, max_scale: int = 4) -> tuple[str, int]:
    """The largest scale at which the label fits; very long labels are shortened with '...'."""
    for scale in range(max_scale, 0, -1):
        if text_width(text, scale) <= width:
            return text, scale
    fits = max(1, (width + 1) // (GLYPH_WIDTH + 1) - 3)
    return text[:fits] + "...", 1


def avatar_frame(width: int, height: int, avatar: str, background: Colour | None, transparent: bool) -> bytes:
    """PNG (RGBA) of a head-and-shoulders silhouette with the avatar's name on a band at the bottom."""
    back: Colour = (0, 0, 0, 0) if transparent else (background or colour_for(avatar, 24))
    canvas = Canvas(width, height, back)
    figure = colour_for(avatar, 140)
    unit = min(width, height)
    cx, head_y, head_ry = width // 2, height // 2 - unit // 8, unit // 5
    canvas.fill_ellipse(cx, head_y + head_ry + unit // 4, unit * 2 // 5, unit // 4, figure)
    canvas.fill_ellipse(cx, head_y, unit // 6, head_ry, figure)
    label, scale = fit_label(avatar, width - 24)
    band_top = height - (GLYPH_HEIGHT + 4) * scale - 12
    canvas.fill_rect(0, band_top, width, height, (16, 16, 16, 220))
    canvas.draw_text(
        label, (width - text_width(label, scale)) // 2, band_top + 2 * scale + 6, scale, (255, 255, 255, 255)
    )
    # Inset by more than the renderer's pan margin, so the caption never slides out of view.
    canvas.draw_text("EMULATED AVATAR V", width // 8, height // 8, 2, (255, 255, 255, 200))
    return canvas.to_png()

"""The QR label stuck on a gateway: unit id and gateway id, readable by a
phone and by eye. `qrcode` (with Pillow) draws the PNG; the same code is
printed on the terminal so the technician can check it at once."""

from __future__ import annotations

import io
from pathlib import Path

import qrcode
from PIL import Image, ImageDraw, ImageFont


def qr_text(unit: str, gateway: str) -> str:
    return f"UMMC;unit={unit};gateway={gateway}"


def _qr(unit: str, gateway: str) -> qrcode.QRCode:
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=8, border=3)
    qr.add_data(qr_text(unit, gateway))
    qr.make(fit=True)
    return qr


def save_label(unit: str, gateway: str, directory: Path) -> Path:
    """`<directory>/<unit>_<gateway>.png`: the QR code with both ids under it."""
    img = _qr(unit, gateway).make_image(fill_color="black", back_color="white")
    code = img.get_image().convert("RGB")
    font = ImageFont.load_default(size=22)
    lines = [f"UNIT {unit}", f"GW   {gateway}"]
    width = max(code.width, 320)
    label = Image.new("RGB", (width, code.height + 30 * len(lines) + 10), "white")
    label.paste(code, ((width - code.width) // 2, 0))
    draw = ImageDraw.Draw(label)
    for i, text in enumerate(lines):
        draw.text((12, code.height + 30 * i), text, fill="black", font=font)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{unit}_{gateway}.png"
    label.save(path)
    return path


def ascii_qr(unit: str, gateway: str) -> str:
    out = io.StringIO()
    _qr(unit, gateway).print_ascii(out=out, invert=True)
    return out.getvalue().rstrip("\n")

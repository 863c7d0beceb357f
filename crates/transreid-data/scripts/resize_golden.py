"""Prints the PIL resize outputs that `src/transform/resize.rs` tests against.

The source is a 7x11 (width x height) RGB pattern computed by the same formula in the test:
    v(x, y, c) = (37x + 91y + 53c + 11·((x·y) mod 13)) mod 256
Run: python3 scripts/resize_golden.py   (needs Pillow and NumPy)
"""
import numpy as np
from PIL import Image

W, H = 7, 11
src = np.zeros((H, W, 3), dtype=np.uint8)
for y in range(H):
    for x in range(W):
        for c in range(3):
            src[y, x, c] = (37 * x + 91 * y + 53 * c + 11 * ((x * y) % 13)) % 256
img = Image.fromarray(src, "RGB")
for name, filt in [("BICUBIC", Image.BICUBIC), ("BILINEAR", Image.BILINEAR)]:
    for (w, h) in [(10, 20), (4, 6)]:
        out = np.asarray(img.resize((w, h), filt)).reshape(-1)
        print(f"const {name}_{w}X{h}: [u8; {out.size}] = [{', '.join(map(str, out))}];")

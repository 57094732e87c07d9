#!/usr/bin/env python3
"""A recorded kiosk sequence made from one live photo: someone steps in front of the
camera, stands still (with the small movements and sensor noise of a webcam), blinks once,
and stays. The kiosk loop's test and `vouch bench kiosk` replay it.

The photo is upstream's live sample `image_T1.jpg` (Silent-Face-Anti-Spoofing, Apache-2.0),
turned upright by its EXIF orientation and cut to a 640x480 webcam frame. The blink is
made: in two frames both eyes are painted shut (the skin above each eye moved down over it,
a dark lash line along the lid), from the 68 landmarks `vouch face embed` finds on the
frame. It shows the kiosk a closing and opening eye; it is not evidence of liveness (the
frames are all one capture of a live person, which is what the liveness networks judge).

Usage: scripts/kiosk-sequence.py SAMPLE OUT VOUCH
writes OUT/frame_NN.jpg (JPEG quality 85), OUT/reference.jpg (the still frame, as the
person's enrollment photo) and OUT/sequence.json (frame rate, when the face is wholly in
view, which frames have the eyes shut). VOUCH is the vouch binary (for the
landmarks). Runs in a venv with pillow and numpy (see models/README.md for the command).
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps

FPS = 15
WIDTH, HEIGHT = 640, 480
# The person slides in from the right over these offsets (pixels), then stands.
ENTERING = [640, 480, 300, 120]
STANDING = 16
# Frames (counted from the first standing frame) with the eyes shut.
SHUT = [6, 7]


def webcam_frame(sample: Path) -> Image.Image:
    upright = ImageOps.exif_transpose(Image.open(sample)).convert("RGB")
    # The face sits in the upper middle of the 480x640 portrait: keep a 4:3 band around it.
    band = upright.crop((0, 40, 480, 400))
    return band.resize((WIDTH, HEIGHT), Image.LANCZOS)


def eye_landmarks(vouch: str, frame: Path) -> list[list[tuple[float, float]]]:
    out = subprocess.run(
        [vouch, "--device", "cpu", "face", "embed", str(frame), "--json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    points = json.loads(out)["faces"][0]["landmarks"]
    xy = [(p["x"], p["y"]) for p in points]
    return [xy[36:42], xy[42:48]]


def shut_eyes(frame: Image.Image, eyes) -> Image.Image:
    pixels = np.asarray(frame).copy()
    mask = Image.new("L", frame.size, 0)
    draw = ImageDraw.Draw(mask)
    lids = []
    for eye in eyes:
        xs = [x for x, _ in eye]
        ys = [y for _, y in eye]
        height = max(ys) - min(ys)
        # The eye opening, a little enlarged, is covered by the skin above it.
        cx, cy = sum(xs) / 6, sum(ys) / 6
        grown = [(cx + 1.25 * (x - cx), cy + 1.6 * (y - cy)) for x, y in eye]
        draw.polygon(grown, fill=255)
        lids.append((eye, int(round(height * 1.6 + 3))))
    covered = np.asarray(mask) > 0
    for eye, shift in lids:
        ys, xs = np.nonzero(covered)
        near = (xs >= min(x for x, _ in eye) - 8) & (xs <= max(x for x, _ in eye) + 8)
        ys, xs = ys[near], xs[near]
        pixels[ys, xs] = pixels[np.clip(ys - shift, 0, HEIGHT - 1), xs]
    shut = Image.fromarray(pixels)
    soft = shut.filter(ImageFilter.GaussianBlur(1.2))
    shut.paste(soft, mask=mask.filter(ImageFilter.GaussianBlur(2)))
    draw = ImageDraw.Draw(shut)
    for eye, _ in lids:
        # The closed lid's lash line: from the outer corner along the lower lid.
        line = [eye[0], eye[5], eye[4], eye[3]]
        draw.line([(x, y - 1) for x, y in line], fill=(40, 30, 30), width=2)
    return shut


def entering(frame: Image.Image, offset: int) -> Image.Image:
    """The scene with the person `offset` px to the right: the wall behind is the
    frame's own left edge, stretched."""
    pixels = np.asarray(frame)
    out = np.repeat(pixels[:, :1], WIDTH, axis=1).copy()
    if offset < WIDTH:
        out[:, offset:] = pixels[:, : WIDTH - offset]
    return Image.fromarray(out)


def jitter(frame: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A standing person's sway (a few pixels, a percent of scale) and sensor noise."""
    scale = 1.0 + rng.uniform(-0.01, 0.01)
    dx, dy = rng.integers(-4, 5, size=2)
    moved = frame.transform(
        frame.size,
        Image.AFFINE,
        (1 / scale, 0, float(dx), 0, 1 / scale, float(dy)),
        resample=Image.BILINEAR,
    )
    noisy = np.asarray(moved).astype(np.float32) + rng.normal(0, 2.0, (HEIGHT, WIDTH, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def main() -> None:
    sample, out, vouch = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    out.mkdir(parents=True, exist_ok=True)
    base = webcam_frame(sample)
    reference = out / "reference.jpg"
    base.save(reference, quality=90)
    eyes = eye_landmarks(vouch, reference)
    closed = shut_eyes(base, eyes)
    rng = np.random.default_rng(2026)
    frames = [entering(base, offset) for offset in ENTERING]
    for index in range(STANDING):
        frames.append(jitter(closed if index in SHUT else base, rng))
    for index, frame in enumerate(frames):
        frame.save(out / f"frame_{index:02}.jpg", quality=85)
    (out / "sequence.json").write_text(
        json.dumps(
            {
                "fps": FPS,
                "frames": len(frames),
                "face_in_view_from": len(ENTERING),
                "eyes_shut": [len(ENTERING) + i for i in SHUT],
                "source": "image_T1.jpg (Silent-Face-Anti-Spoofing samples, Apache-2.0)",
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()

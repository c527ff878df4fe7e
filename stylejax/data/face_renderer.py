"""Deterministic procedural renderer of cartoon faces with exact part labels.

Pure numpy (no TensorFlow), so build workers can import it cheaply. Every shape is a signed
distance field evaluated on the pixel grid: the image gets anti-aliased coverage, the label
map gets the pixels that are at least half covered, so the two always align.

Frames: the image spans [-VIEW, VIEW] in x (right) and y (down). Facial features live on the
surface of the head, an ellipsoid seen from the front; a pixel's surface coordinates are
(u, v) = (a * longitude, height), so turning the head (yaw) moves and foreshortens
features exactly as on a real head. Roll rotates the head about the chin.
"""

import colorsys
import copy
import math

import numpy as np

from stylejax.data.labels import LABEL

HAIR_COLORS = ("black", "brown", "blond", "red", "gray")
HAIR_RGB = np.array(
    [
        (0.10, 0.08, 0.07),
        (0.38, 0.23, 0.12),
        (0.88, 0.76, 0.44),
        (0.66, 0.27, 0.10),
        (0.72, 0.72, 0.72),
    ],
    np.float32,
)
HAIR_STYLES = ("short", "bob", "long", "bangs")
EYE_RGB = np.array(
    [(0.35, 0.20, 0.08), (0.25, 0.45, 0.80), (0.25, 0.55, 0.30), (0.45, 0.48, 0.50)], np.float32
)
YAW_BUCKETS = ("right_profile", "right", "frontal", "left", "left_profile")
YAW_BUCKET_EDGES = (-35.0, -12.0, 12.0, 35.0)  # degrees

# Order of the stored factor vector. Angles in degrees; categorical factors hold an index.
# yaw > 0 turns the face towards the image's right (the subject's left); roll > 0 tilts the
# head clockwise in the image.
FACTOR_NAMES = (
    "face_width",
    "face_height",
    "skin_tone",
    "hair_style",
    "hair_color",
    "eye_color",
    "eye_spacing",
    "eye_size",
    "brow_thickness",
    "brow_tilt",
    "nose_length",
    "nose_width",
    "mouth_width",
    "lip_thickness",
    "yaw",
    "roll",
    "smile",
    "eyeglasses",
    "background_hue",
    "background_value",
    "light_azimuth",
    "light_strength",
)
SKIN_LIGHT, SKIN_DARK = np.array((0.96, 0.80, 0.68)), np.array((0.45, 0.29, 0.20))
WHITE = np.array((0.97, 0.97, 0.95))
HEAD_CENTER = (0.0, -0.1)
EYE_HEIGHT = 0.02  # v of the eyes' centres, in head-local units (0 = the head's centre)
FULL = (slice(None), slice(None))  # a window covering the whole image
VIEW = 0.8  # half the side of the image in frame units: the head is ~60% of its height


def sample_factors(rng):
    """Draws one face's factors (a dict keyed by FACTOR_NAMES) from a numpy Generator."""
    u = rng.uniform
    # Smile stays clear of 0.5 so that the Smiling attribute is never ambiguous.
    smile = u(0.0, 0.35) if rng.random() < 0.5 else u(0.65, 1.0)
    return dict(
        face_width=u(0.36, 0.44),
        face_height=u(0.47, 0.55),
        skin_tone=u(0.0, 1.0),
        hair_style=float(rng.integers(len(HAIR_STYLES))),
        hair_color=float(rng.integers(len(HAIR_COLORS))),
        eye_color=float(rng.integers(len(EYE_RGB))),
        eye_spacing=u(0.13, 0.17),
        eye_size=u(0.045, 0.06),
        brow_thickness=u(0.012, 0.024),
        brow_tilt=u(-12.0, 12.0),
        nose_length=u(0.13, 0.19),
        nose_width=u(0.03, 0.05),
        mouth_width=u(0.08, 0.12),
        lip_thickness=u(0.018, 0.03),
        yaw=u(-55.0, 55.0),
        roll=u(-15.0, 15.0),
        smile=smile,
        eyeglasses=float(rng.random() < 0.3),
        background_hue=u(0.25, 0.8),
        background_value=u(0.45, 0.85),
        light_azimuth=u(-60.0, 60.0),
        light_strength=u(0.3, 0.8),
    )


SPLIT_IDS = {"train": 0, "test": 1}  # keeps the identities of the two splits apart


def example_factors(seed, split, index):
    """The factors of example `index` of the synthetic faces' `split` (the synthetic_faces
    data set renders them): a pure function of its arguments."""
    return sample_factors(np.random.default_rng([seed, SPLIT_IDS[split], index]))


def factors_to_vector(factors):
    return np.array([factors[name] for name in FACTOR_NAMES], np.float32)


def vector_to_factors(vector):
    return {name: float(value) for name, value in zip(FACTOR_NAMES, vector)}


def frontal(factors):
    """The same face and scene looking straight at the camera."""
    return dict(factors, yaw=0.0, roll=0.0)


def smile_flipped(factors):
    """The same face with the Smiling attribute toggled and nothing else changed."""
    return dict(factors, smile=1.0 - factors["smile"])


def attributes(factors):
    yaw_bucket = int(np.searchsorted(YAW_BUCKET_EDGES, factors["yaw"]))
    return dict(
        Smiling=factors["smile"] > 0.5,
        Eyeglasses=factors["eyeglasses"] > 0.5,
        hair_color=int(factors["hair_color"]),
        hair_style=int(factors["hair_style"]),
        yaw_bucket=yaw_bucket,
    )


def _ellipse(x, y, cx, cy, rx, ry, angle=0.0):
    """Approximate signed distance to a (rotated) ellipse; accurate near its boundary."""
    dx, dy = x - cx, y - cy
    if angle:
        c, s = math.cos(angle), math.sin(angle)
        dx, dy = c * dx + s * dy, -s * dx + c * dy
    gx, gy = dx / (rx * rx), dy / (ry * ry)
    q = np.sqrt((dx / rx) ** 2 + (dy / ry) ** 2)
    return (q - 1.0) * q / np.maximum(np.sqrt(gx * gx + gy * gy), 1e-6)


def _box(x, y, x0, x1, y0, y1):
    return np.maximum(np.maximum(x0 - x, x - x1), np.maximum(y0 - y, y - y1))


class _Canvas:
    """Image, label map and the coordinate grids of one render."""

    def __init__(self, f, size):
        self.size, self.px = size, 2.0 * VIEW / size
        grid = ((np.arange(size) + 0.5) * self.px - VIEW).astype(np.float32)
        self.x, self.y = np.meshgrid(grid, grid)
        self.image = np.zeros((size, size, 3), np.float32)
        self.seg = np.zeros((size, size), np.uint8)
        # Head-local coordinates: undo the roll about the chin, centre on the head.
        self.a, self.b = f["face_width"], f["face_height"]
        cx, cy = HEAD_CENTER
        self.pivot = (cx, cy + 0.9 * self.b)
        self.roll = math.radians(f["roll"])
        c, s = math.cos(self.roll), math.sin(self.roll)
        dx, dy = self.x - self.pivot[0], self.y - self.pivot[1]
        self.xh = c * dx + s * dy
        self.yh = -s * dx + c * dy + 0.9 * self.b
        self.head = _ellipse(self.xh, self.yh, 0.0, 0.0, self.a, self.b)
        # Surface coordinates of the visible hemisphere, and a pixel's size in them.
        self.yaw = math.radians(f["yaw"])
        r = self.a * np.sqrt(np.clip(1.0 - (self.yh / self.b) ** 2, 1e-4, 1.0))
        psi = np.arcsin(np.clip(self.xh / r, -1.0, 1.0))
        self.u, self.v = self.a * (psi - self.yaw), self.yh
        self.px_uv = self.px * np.clip(self.a / (r * np.maximum(np.cos(psi), 1e-3)), 1.0, 4.0)

    def window(self, u, v, radius):
        """Pixel slices covering a surface feature at (u, v) of the given radius; None if it
        faces away from the camera."""
        psi = u / self.a + self.yaw
        if math.cos(psi) <= 0.0:
            return None
        r = self.a * math.sqrt(max(1.0 - (v / self.b) ** 2, 1e-4))
        return self.window_local(r * math.sin(psi), v, radius)

    def window_local(self, xh, yh, radius):
        """Pixel slices covering a disc in head-local coordinates."""
        c, s = math.cos(self.roll), math.sin(self.roll)
        dy = yh - 0.9 * self.b
        x, y = c * xh - s * dy + self.pivot[0], s * xh + c * dy + self.pivot[1]
        radius += 2 * self.px

        def span(center):
            lo = int(np.floor((center - radius + VIEW) / self.px))
            hi = int(np.ceil((center + radius + VIEW) / self.px))
            return slice(min(max(lo, 0), self.size), min(max(hi, 0), self.size))

        return span(y), span(x)

    def surface_dist(self, dist_uv, where):
        """A surface shape's distance in pixels, clipped sharply to the head's silhouette."""
        return np.maximum(dist_uv / self.px_uv[where], self.head[where] / self.px)

    def paint(self, dist, colour, label, where=FULL, alpha=1.0):
        """Composites `colour` where the signed distance `dist` (in pixels, on the window
        `where`) is negative; labels the pixels that are at least half covered."""
        cover = 0.5 - dist
        np.minimum(np.maximum(cover, 0.0, out=cover), 1.0, out=cover)  # np.clip is slower
        self.seg[where][cover >= 0.5] = label
        if alpha != 1.0:
            cover *= alpha
        image = self.image[where]
        image += (np.asarray(colour, np.float32) - image) * cover[..., None]


def _background(f, canvas):
    hue, value = f["background_hue"], f["background_value"]
    rgb = np.array(colorsys.hsv_to_rgb(hue, 0.45, value), np.float32)
    gradient = 1.0 - 0.12 * canvas.y  # brighter at the top
    return rgb * gradient[..., None]


def _shading(f, c):
    """Per-pixel light factor: Lambert shading on the head ellipsoid, a soft tilt elsewhere."""
    az, strength = math.radians(f["light_azimuth"]), f["light_strength"]
    light = np.array([math.sin(az), -0.35, math.cos(az)], np.float32)
    light /= np.linalg.norm(light)
    nx, ny = c.xh / c.a, c.yh / c.b
    nz = np.sqrt(np.clip(1.0 - nx * nx - ny * ny, 0.0, 1.0))
    lambert = np.clip(
        (nx * light[0] + ny * light[1] + nz * light[2])
        / np.sqrt(nx * nx + ny * ny + nz * nz + 1e-6),
        0.0,
        1.0,
    )
    head = 1.0 - strength * 0.45 * (1.0 - lambert)
    return np.where(c.head < 0, head, _flat_shading(f, c))


def _flat_shading(f, c):
    return 1.0 + 0.1 * f["light_strength"] * c.x * math.sin(math.radians(f["light_azimuth"]))


def _hair(f, c, colour, behind):
    """Hair volume around the head (behind=True) or hair on the head surface."""
    style = HAIR_STYLES[int(f["hair_style"])]
    a, b, ve = c.a, c.b, EYE_HEIGHT
    # How far down the hair reaches at the sides of the head, per style.
    side_end = {"short": ve - 0.05, "bob": ve + 0.30, "long": ve + 0.45, "bangs": ve - 0.03}[style]
    if behind:
        thick = 0.05 if style in ("short", "bangs") else 0.08
        dist = np.maximum(_ellipse(c.xh, c.yh, 0.0, 0.0, a + thick, b + thick), c.yh - side_end)
        if style == "long":
            drape = _box(c.xh, c.yh, -a - thick, a + thick, 0.0, 2.0 + b)
            dist = np.minimum(dist, drape)
        c.paint(dist / c.px, colour, LABEL["hair"])
        return
    phi = c.u / a
    if style == "bangs":
        hairline = ve - 0.09 + 0.012 * np.cos(9.0 * phi)
    else:
        hairline = ve - 0.16 + 0.07 * (phi / 1.1) ** 2
    top = c.v - hairline
    sides = np.maximum(a * (1.05 - np.abs(phi)), c.v - side_end)
    c.paint(c.surface_dist(np.minimum(top, sides), FULL), colour, LABEL["hair"])


def _ears(f, c, skin, in_front):
    """An ear turned towards the camera is drawn over the skin; one seen edge-on or from
    behind is drawn before the head, so only what sticks out past the head shows."""
    ve = EYE_HEIGHT
    for side, label in ((1.0, LABEL["l_ear"]), (-1.0, LABEL["r_ear"])):
        psi = side * math.pi / 2 + c.yaw
        facing = math.cos(psi)
        if (facing >= 0.35) != in_front:
            continue
        x, y = (c.a + 0.01) * math.sin(psi), ve + 0.05
        rx, ry = 0.05 * (0.6 + 0.4 * max(facing, 0.0)), 0.085
        w = c.window_local(x, y, ry)
        dist = _ellipse(c.xh[w], c.yh[w], x, y, rx, ry)
        c.paint(dist / c.px, skin * 0.9, label, w)


def _surface_paint(c, w, dist_fn, colour, label, alpha=1.0):
    """Paints a shape given as a function of surface coordinates on window w, clipped to the
    head's silhouette."""
    if w is not None:
        c.paint(c.surface_dist(dist_fn(c.u[w], c.v[w]), w), colour, label, w, alpha)


def _glasses(f, c, eye_w, frames):
    ve, es = EYE_HEIGHT, f["eye_spacing"]
    rx, ry = 1.5 * eye_w, 1.15 * eye_w
    thick = max(0.018, c.px)
    for side in (1.0, -1.0):
        w = c.window(side * es, ve, rx + thick)
        lens = lambda u, v, s=side: _ellipse(u, v, s * es, ve, rx, ry)
        if not frames:
            _surface_paint(c, w, lens, (0.60, 0.75, 0.85), LABEL["eye_g"], alpha=0.3)
            continue
        _surface_paint(
            c, w, lambda u, v: np.abs(lens(u, v)) - thick / 2, (0.12, 0.10, 0.10), LABEL["eye_g"]
        )
        # Temple arm from the outer rim towards the ear.
        arm_u0, arm_u1 = side * (es + rx), side * 1.45 * c.a
        w = c.window((arm_u0 + arm_u1) / 2, ve, abs(arm_u1 - arm_u0) / 2 + thick)
        _surface_paint(
            c,
            w,
            lambda u, v: _box(
                u,
                v,
                min(arm_u0, arm_u1),
                max(arm_u0, arm_u1),
                ve - 0.02 - thick / 2,
                ve - 0.02 + thick / 2,
            ),
            (0.12, 0.10, 0.10),
            LABEL["eye_g"],
        )
    bridge = es - rx
    w = c.window(0.0, ve - 0.01, bridge + thick)
    _surface_paint(
        c,
        w,
        lambda u, v: _box(u, v, -bridge, bridge, ve - 0.01 - thick / 2, ve - 0.01 + thick / 2),
        (0.12, 0.10, 0.10),
        LABEL["eye_g"],
    )


def _mouth(f, c, skin):
    smile = f["smile"]
    v_mouth = EYE_HEIGHT + f["nose_length"] + 0.085
    half_w = f["mouth_width"] * (1.0 + 0.2 * smile)
    lip = f["lip_thickness"]
    corner_lift = 0.09 * smile - 0.03  # > 0 lifts the corners
    opening = 0.07 * np.clip((smile - 0.5) * 2.0, 0.0, 1.0)
    w = c.window(0.0, v_mouth, half_w + 0.05)
    if w is None:
        return
    u, v = c.u[w], c.v[w]
    t2 = np.clip((u / half_w) ** 2, 0.0, 1.0)
    middle = v_mouth - corner_lift * t2
    gap = opening * (1.0 - t2)
    profile = np.sqrt(1.0 - t2)
    lip_rgb = 0.4 * skin + 0.6 * np.array((0.78, 0.28, 0.30))
    outside = np.abs(u) - half_w

    def band(top, bottom):
        return c.surface_dist(np.maximum(np.maximum(top - v, v - bottom), outside), w)

    c.paint(band(middle - gap / 2 - lip * profile, middle - gap / 2), lip_rgb, LABEL["u_lip"], w)
    c.paint(
        band(middle + gap / 2, middle + gap / 2 + 1.25 * lip * profile),
        lip_rgb * 0.92,
        LABEL["l_lip"],
        w,
    )
    if opening > 0:
        c.paint(band(middle - gap / 2, middle + gap / 2), (0.96, 0.95, 0.90), LABEL["mouth"], w)


def _draw_all_but_mouth(f, size):
    c = _Canvas(f, size)
    c.image[:] = _background(f, c)
    skin = _skin(f)
    hair = HAIR_RGB[int(f["hair_color"])]
    ve, es, eye_w = EYE_HEIGHT, f["eye_spacing"], f["eye_size"]

    _hair(f, c, hair, behind=True)
    neck_top = HEAD_CENTER[1] + 0.5 * c.b
    neck = _box(c.x, c.y, HEAD_CENTER[0] - 0.45 * c.a, HEAD_CENTER[0] + 0.45 * c.a, neck_top, 2.0)
    c.paint(neck / c.px, skin * 0.85, LABEL["neck"])
    cloth_rgb = colorsys.hsv_to_rgb(
        (f["background_hue"] + 0.5) % 1.0, 0.6, 1.15 - f["background_value"]
    )
    c.paint(_ellipse(c.x, c.y, 0.0, 1.08, 0.9, 0.42) / c.px, cloth_rgb, LABEL["cloth"])
    _ears(f, c, skin, in_front=False)
    c.paint(c.head / c.px, skin, LABEL["skin"])
    _ears(f, c, skin, in_front=True)
    _hair(f, c, hair, behind=False)

    # Nose: its tip sticks out of the surface, so it slides sideways with the yaw.
    v_top, v_tip = ve + 0.01, ve + f["nose_length"]
    shift = 0.05 * math.tan(c.yaw)

    def nose(u, v):
        slide = shift * np.clip((v - v_top) / (v_tip - v_top), 0.0, 1.0)
        return _ellipse(
            u - slide, v, 0.0, (v_top + v_tip) / 2, f["nose_width"], 0.52 * (v_tip - v_top)
        )

    _surface_paint(
        c,
        c.window(0.0, (v_top + v_tip) / 2, f["nose_length"] / 2 + 0.1),
        nose,
        skin * 0.86,
        LABEL["nose"],
    )

    if f["eyeglasses"] > 0.5:
        _glasses(f, c, eye_w, frames=False)
    for side, eye_label, brow_label in (
        (1.0, LABEL["l_eye"], LABEL["l_brow"]),
        (-1.0, LABEL["r_eye"], LABEL["r_brow"]),
    ):
        eu = side * es
        w = c.window(eu, ve, eye_w)
        eye = lambda u, v: _ellipse(u, v, eu, ve, eye_w, 0.55 * eye_w)
        _surface_paint(c, w, eye, WHITE, eye_label)
        iris_r = 0.5 * eye_w
        _surface_paint(
            c,
            w,
            lambda u, v: np.maximum(_ellipse(u, v, eu, ve, iris_r, iris_r), eye(u, v)),
            EYE_RGB[int(f["eye_color"])],
            eye_label,
        )
        _surface_paint(
            c,
            w,
            lambda u, v: _ellipse(u, v, eu, ve, 0.45 * iris_r, 0.45 * iris_r),
            (0.05, 0.05, 0.05),
            eye_label,
        )
        tilt = side * math.radians(f["brow_tilt"])
        w = c.window(eu, ve - 0.085, 1.3 * eye_w)
        _surface_paint(
            c,
            w,
            lambda u, v: _ellipse(u, v, eu, ve - 0.085, 1.25 * eye_w, f["brow_thickness"], tilt),
            hair * 0.8,
            brow_label,
        )
    if f["eyeglasses"] > 0.5:
        _glasses(f, c, eye_w, frames=True)
    return c


def _skin(f):
    return (1 - f["skin_tone"]) * SKIN_LIGHT + f["skin_tone"] * SKIN_DARK


def _finish(f, c):
    """Paints the mouth (drawn last, so the smile can be swapped) and applies the light."""
    _mouth(f, c, _skin(f))
    image = np.clip(c.image * _shading(f, c)[..., None], 0.0, 1.0)
    return np.round(image * 255).astype(np.uint8), c.seg


def render(f, size):
    """Renders factors `f` at `size` px. Returns (image uint8 HxWx3, labels uint8 HxW)."""
    return _finish(f, _draw_all_but_mouth(f, size))


def background(f, size):
    """The background alone, lit as in `render` (uint8 HxWx3)."""
    c = _Canvas(f, size)
    image = np.clip(_background(f, c) * _flat_shading(f, c)[..., None], 0.0, 1.0)
    return np.round(image * 255).astype(np.uint8)


def sketch(labels, line_width=1):
    """Line drawing of the part boundaries of a label map: uint8 HxWx1, black on white."""
    edge = np.zeros(labels.shape, bool)
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[1:, :] |= labels[1:, :] != labels[:-1, :]
    for _ in range(line_width - 1):  # thicken lines at high resolution
        grown = edge.copy()
        grown[:, 1:] |= edge[:, :-1]
        grown[1:, :] |= edge[:-1, :]
        edge = grown
    return np.where(edge, 0, 255).astype(np.uint8)[..., None]


def render_example(f, size):
    """Everything stored per example: image, labels, sketch and both counterfactuals."""
    canvas = _draw_all_but_mouth(f, size)
    # The smile-flipped render shares everything drawn before the mouth.
    other = copy.copy(canvas)
    other.image, other.seg = canvas.image.copy(), canvas.seg.copy()
    image, labels = _finish(f, canvas)
    return dict(
        image=image,
        segmentation=labels[..., None],
        sketch=sketch(labels, line_width=max(1, size // 128)),
        frontal=render(frontal(f), size)[0],
        smile_flipped=_finish(smile_flipped(f), other)[0],
    )

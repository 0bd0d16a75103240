"""The embedded benchmark: seeded procedural street scenes in a "source" and a "target" domain.

It exists so that the whole project runs on a fresh machine without a download, and it is
built to carry the two phenomena HRDA is about:

- **Small and thin objects** placed with perspective on a ground plane seen by a pinhole
  camera: poles (with lamp arms), traffic signs and lights, distant persons, riders,
  bicycles and cars are a few HR pixels wide and shrink towards the horizon, so a 2x
  downscaled input loses them.
- **A domain shift that lives at high resolution.** Both domains share the 19 Cityscapes
  classes and the scene rules, but the *source* ("synthetic", game-like) and the *target*
  ("real", camera-like) differ in fine per-class texture (blotchy CG surfaces, paved
  tiles, bright façade windows vs. sensor grain, streaks, clouds, dark windows), palette
  and illumination (saturated and warm vs. muted and overcast, vignetting, gamma),
  sensor noise and blur (none vs. Gaussian blur and noise), and layout statistics
  (camera height, road width, density of cars, persons, poles and trees).

Labels are Cityscapes trainIds. Every image has its own generator seeded from
``(seed, split, index)``, so a split is identical byte for byte whatever the order or the
number of threads that draw it.

Besides the three splits, the target-val scenes can be drawn again under another
*condition* (``target_val_night``: the same scenes and labels, at night), a second labelled
target set for evaluating on several targets without a download. It is drawn only when
asked for and never changes the other splits.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from hrda_kedro.data.labels import NUM_CLASSES, TRAIN_ID
from hrda_kedro.hrda.config import SEED_LIMIT, Config, require, setting

logger = logging.getLogger(__name__)

# Bump whenever the drawing changes: it is part of the fingerprint, so data are redrawn.
GENERATOR_VERSION = 3
# The splits of the benchmark and the domain each one is drawn from.
SPLIT_DOMAINS = {"source_train": "source", "target_train": "target", "target_val": "target"}
# Further renderings of a split's scenes under a condition: subset -> (split, condition).
CONDITION_SUBSETS = {"target_val_night": ("target_val", "night")}
EMBEDDED_SUBSETS: tuple[str, ...] = (*SPLIT_DOMAINS, *CONDITION_SUBSETS)
# Every trainId is drawn in both domains.
STREET_CLASSES: tuple[int, ...] = tuple(range(NUM_CLASSES))
FINGERPRINT_FILE = "fingerprint.json"

ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, LIGHT, SIGN, VEGETATION, TERRAIN, SKY = (
    TRAIN_ID[n]
    for n in ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
              "vegetation", "terrain", "sky")
)  # fmt: skip
PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE = (
    TRAIN_ID[n]
    for n in ("person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")
)

_FAR = 180.0  # metres; the street ends in a band of distant buildings and trees

Colour = tuple[int, int, int]


@dataclass(frozen=True)
class DomainStyle:
    """Everything that differs between the two domains; the scene rules are shared."""

    camera_height: tuple[float, float]
    horizon: tuple[float, float]  # horizon row as a fraction of the image height
    road_half_width: tuple[float, float]
    sidewalk_width: tuple[float, float]
    building_side: float  # probability that a side of the street is built up
    pole_spacing: tuple[float, float]
    tree_spacing: tuple[float, float]
    cars: float  # Poisson means per image
    parked_cars: float
    persons: float
    riders: float
    truck: float  # probabilities per image
    bus: float
    train: float
    palette: dict[int, tuple[Colour, ...]]
    window: Colour
    textures: dict[int, tuple[tuple[str, float], ...]]
    sidewalk_tiles: bool
    marking_contrast: float
    gain: tuple[float, float]
    tint: tuple[float, float, float]
    gamma: float
    vignette: float
    blur_sigma: float
    noise_sigma: float
    saturation: float


SOURCE_STYLE = DomainStyle(
    camera_height=(1.9, 2.5),
    horizon=(0.38, 0.45),
    road_half_width=(5.5, 8.0),
    sidewalk_width=(2.5, 4.5),
    building_side=0.6,
    pole_spacing=(22.0, 38.0),
    tree_spacing=(16.0, 30.0),
    cars=6.0,
    parked_cars=1.5,
    persons=3.0,
    riders=0.8,
    truck=0.45,
    bus=0.35,
    train=0.3,
    palette={
        ROAD: ((92, 92, 98),),
        SIDEWALK: ((196, 184, 170),),
        BUILDING: (
            (205, 170, 128),
            (172, 88, 66),
            (222, 212, 190),
            (122, 122, 138),
            (190, 120, 80),
        ),
        WALL: ((186, 162, 136),),
        FENCE: ((168, 128, 84),),
        POLE: ((136, 140, 150),),
        LIGHT: ((34, 36, 38),),
        SIGN: ((230, 30, 30), (30, 80, 220), (240, 220, 20), (245, 245, 245)),
        VEGETATION: ((58, 156, 38), (40, 130, 50)),
        TERRAIN: ((156, 196, 78),),
        SKY: ((96, 160, 242),),
        PERSON: ((220, 40, 40), (40, 60, 200), (240, 200, 40), (30, 160, 90), (240, 240, 240)),
        RIDER: ((250, 120, 20), (30, 30, 30), (200, 30, 160)),
        CAR: ((210, 25, 25), (25, 70, 210), (245, 245, 245), (20, 20, 24), (240, 190, 10)),
        TRUCK: ((226, 226, 220), (200, 64, 40)),
        BUS: ((244, 204, 40), (40, 150, 70)),
        TRAIN: ((236, 236, 236),),
        MOTORCYCLE: ((30, 30, 170), (200, 20, 20)),
        BICYCLE: ((210, 40, 40), (20, 140, 220)),
    },
    window=(150, 210, 240),
    textures={
        ROAD: (("blotch", 0.06),),
        SIDEWALK: (("blotch", 0.04),),
        BUILDING: (("blotch", 0.05),),
        WALL: (("blotch", 0.08),),
        VEGETATION: (("blotch", 0.35),),
        TERRAIN: (("blotch", 0.2),),
    },
    sidewalk_tiles=True,
    marking_contrast=1.0,
    gain=(1.0, 1.1),
    tint=(1.06, 1.0, 0.9),
    gamma=0.95,
    vignette=0.0,
    blur_sigma=0.0,
    noise_sigma=0.0,
    saturation=1.15,
)

TARGET_STYLE = DomainStyle(
    camera_height=(1.2, 1.6),
    horizon=(0.45, 0.52),
    road_half_width=(3.8, 6.0),
    sidewalk_width=(2.0, 4.0),
    building_side=0.8,
    pole_spacing=(11.0, 20.0),
    tree_spacing=(9.0, 18.0),
    cars=3.5,
    parked_cars=4.0,
    persons=6.0,
    riders=1.5,
    truck=0.3,
    bus=0.25,
    train=0.25,
    palette={
        ROAD: ((84, 80, 80),),
        SIDEWALK: ((150, 140, 136),),
        BUILDING: (
            (132, 126, 120),
            (152, 140, 124),
            (110, 104, 100),
            (168, 162, 150),
            (140, 118, 104),
        ),
        WALL: ((140, 134, 124),),
        FENCE: ((118, 118, 108),),
        POLE: ((88, 94, 90),),
        LIGHT: ((30, 34, 28),),
        SIGN: ((190, 50, 50), (50, 80, 160), (210, 190, 60), (215, 215, 210)),
        VEGETATION: ((74, 108, 48), (60, 92, 52)),
        TERRAIN: ((122, 138, 82),),
        SKY: ((172, 190, 208),),
        PERSON: ((50, 50, 56), (110, 100, 90), (150, 60, 60), (60, 70, 100), (190, 188, 180)),
        RIDER: ((40, 40, 44), (120, 60, 40), (70, 90, 120)),
        CAR: ((40, 40, 44), (150, 150, 150), (200, 200, 198), (60, 70, 96), (110, 30, 30)),
        TRUCK: ((176, 176, 166), (90, 90, 96)),
        BUS: ((196, 196, 196), (60, 100, 150)),
        TRAIN: ((200, 200, 190),),
        MOTORCYCLE: ((44, 44, 48), (120, 120, 126)),
        BICYCLE: ((52, 52, 56), (90, 40, 40)),
    },
    window=(52, 58, 66),
    textures={
        ROAD: (("grain", 0.12), ("cloud", 0.06)),
        SIDEWALK: (("grain", 0.1),),
        BUILDING: (("vstreak", 0.07), ("grain", 0.06)),
        WALL: (("grain", 0.1), ("hstreak", 0.05)),
        FENCE: (("grain", 0.08),),
        VEGETATION: (("grain", 0.4), ("blotch", 0.1)),
        TERRAIN: (("grain", 0.25),),
        SKY: (("cloud", 0.12),),
        CAR: (("grain", 0.05),),
        PERSON: (("grain", 0.06),),
    },
    sidewalk_tiles=False,
    marking_contrast=0.55,
    gain=(0.85, 1.0),
    tint=(0.95, 1.0, 1.06),
    gamma=1.1,
    vignette=0.3,
    blur_sigma=0.7,
    noise_sigma=3.0,
    saturation=0.8,
)

STYLES = {"source": SOURCE_STYLE, "target": TARGET_STYLE}


def _lerp(a: object, b: object, t: float) -> object:
    """Blend two style values: numbers and colours linearly, nested tuples element-wise."""
    if isinstance(a, tuple):
        return tuple(_lerp(x, y, t) for x, y in zip(a, b, strict=True))  # type: ignore[arg-type]
    if isinstance(a, int) and not isinstance(a, bool):
        return round(a + (b - a) * t)  # type: ignore[operator]
    return a + (b - a) * t  # type: ignore[operator]


def shifted_style(shift: float) -> DomainStyle:
    """The target style at a given strength: 0 draws it like the source, 1 is TARGET_STYLE.

    Every kind of shift is kept (palette, illumination, sensor noise and blur, fine texture,
    layout) and scaled together, so the size of the gap is a single knob.
    """
    if not 0.0 <= shift <= 1.0:
        raise ValueError(f"domain shift must lie in [0, 1], got {shift}")
    src, tgt = SOURCE_STYLE, TARGET_STYLE
    blended = {}
    for name in DomainStyle.__dataclass_fields__:
        a, b = getattr(src, name), getattr(tgt, name)
        if name == "palette":
            blended[name] = {c: _lerp(a[c], b[c], shift) for c in a}
        elif name == "textures":
            # Source textures fade out while target textures fade in.
            terms = {
                c: tuple((kind, amp * (1 - shift)) for kind, amp in a.get(c, ()))
                + tuple((kind, amp * shift) for kind, amp in b.get(c, ()))
                for c in sorted({*a, *b})
            }
            blended[name] = {c: tuple(t for t in ts if t[1] > 0) for c, ts in terms.items()}
        elif isinstance(a, bool):
            blended[name] = a if shift < 0.5 else b
        else:
            blended[name] = _lerp(a, b, shift)
    return DomainStyle(**blended)


# The kinds of shift between the domains: every DomainStyle field belongs to exactly one.
SHIFT_COMPONENTS: dict[str, tuple[str, ...]] = {
    "palette": ("palette", "window"),
    "illumination": ("gain", "tint", "gamma", "vignette", "saturation"),
    "sensor": ("blur_sigma", "noise_sigma"),
    "texture": ("textures", "sidewalk_tiles", "marking_contrast"),
    "layout": (
        "camera_height", "horizon", "road_half_width", "sidewalk_width", "building_side",
        "pole_spacing", "tree_spacing", "cars", "parked_cars", "persons", "riders", "truck",
        "bus", "train",
    ),
}  # fmt: skip


def partial_shift(components: set[str], shift: float) -> DomainStyle:
    """The source style with the ``components`` (:data:`SHIFT_COMPONENTS` keys) of the
    target style at strength ``shift`` (:func:`shifted_style`): which kind of shift a
    model fails on. All components give the target style, none the source style."""
    unknown = components - SHIFT_COMPONENTS.keys()
    if unknown:
        raise ValueError(
            f"unknown shift components {sorted(unknown)}: expected {list(SHIFT_COMPONENTS)}"
        )
    target = shifted_style(shift)
    fields_ = [name for c in sorted(components) for name in SHIFT_COMPONENTS[c]]
    return replace(SOURCE_STYLE, **{name: getattr(target, name) for name in fields_})


def coarse_shift(style: DomainStyle) -> DomainStyle:
    """``style`` with its pixel-level texture ("grain") drawn at the 4-pixel scale ("blotch",
    same amplitude) and without blur and sensor noise; palette, illumination, layout and
    the coarser textures stay."""
    textures = {
        cls: tuple(("blotch", amp) if kind == "grain" else (kind, amp) for kind, amp in terms)
        for cls, terms in style.textures.items()
    }
    return replace(style, textures=textures, blur_sigma=0.0, noise_sigma=0.0)


@dataclass(frozen=True)
class SplitSizes(Config):
    """Images per split of the embedded benchmark; 0 draws none of a split (a library user
    drawing training images only). The project's ``ingestion.embedded`` needs at least one
    source-train and one target-val image
    (:class:`hrda_kedro.data.ingest.EmbeddedSettings`)."""

    source_train: int = setting(200, ge=0)
    target_train: int = setting(200, ge=0)
    target_val: int = setting(40, ge=0)


@dataclass(frozen=True)
class StreetsConfig(Config):
    """What the generated benchmark depends on (its fingerprint).

    ``ingestion.embedded`` is this plus where the benchmark is drawn
    (:class:`hrda_kedro.data.ingest.EmbeddedSettings`); its defaults are conf/base's.
    """

    seed: int = setting(0, ge=0, lt=SEED_LIMIT)
    height: int = 256
    width: int = 512
    domain_shift: float = 0.6
    sizes: SplitSizes = field(default_factory=SplitSizes)
    # Focal length as a fraction of the image width: 0.55 is an 85-degree field of view;
    # Cityscapes' camera has about 1.1 (2262 px at 2048), which draws every object twice as
    # large in pixels: thin objects a few HR pixels wide that a 2x downscaled input loses.
    focal: float = 0.55
    # Whether the target's fine texture, blur and sensor noise work at pixel level (true) or
    # its texture at the 4-pixel scale without blur and noise (false), a shift that looks
    # the same at HR and at LR. At pixel level the shift hits the HR input hardest.
    pixel_level_shift: bool = True

    def validate(self) -> None:
        require(
            0.0 <= self.domain_shift <= 1.0,
            "domain_shift",
            f"expected 0 (no shift) .. 1 (full shift), got {self.domain_shift}",
        )
        require(0.2 <= self.focal <= 3.0, "focal", f"expected 0.2 .. 3.0, got {self.focal}")
        require(
            self.height >= 16 and self.width >= 32,
            "height/width",
            f"expected at least 16 x 32 pixels, got {self.height} x {self.width}",
        )

    def described(self, conditions: tuple[str, ...] = ()) -> dict[str, Any]:
        """The generator's inputs (this class's fields, not a subclass's) and the condition
        subsets drawn as well (subsets of CONDITION_SUBSETS)."""
        config = {f.name: getattr(self, f.name) for f in fields(StreetsConfig)}
        config["sizes"] = asdict(self.sizes)
        for name in _NEWER_FIELDS:  # at their defaults, the description from before them
            if config[name] == StreetsConfig.__dataclass_fields__[name].default:
                del config[name]
        if conditions:  # without them, the description from before they existed
            config["conditions"] = list(conditions)
        return config

    def fingerprint(self, conditions: tuple[str, ...] = ()) -> str:
        """Hash of the configuration and the generator version.

        Without conditions it is the hash it was before they existed, so a benchmark drawn
        then is not redrawn.
        """
        payload = json.dumps(
            {"version": GENERATOR_VERSION, **self.described(conditions)}, sort_keys=True
        )
        return hashlib.sha1(payload.encode()).hexdigest()

    def subset_sizes(self, conditions: tuple[str, ...] = ()) -> dict[str, int]:
        """Images per drawn subset: the splits, then each condition (as many as its split)."""
        sizes = asdict(self.sizes)
        return {**sizes, **{c: sizes[CONDITION_SUBSETS[c][0]] for c in conditions}}


# Fields added after benchmarks had been drawn: at their defaults, a benchmark's fingerprint
# stays what it was, and it is not redrawn.
_NEWER_FIELDS = ("focal", "pixel_level_shift")


class _Scene:
    """One image under construction: trainId map, float RGB and the camera."""

    def __init__(
        self,
        style: DomainStyle,
        height: int,
        width: int,
        rng: np.random.Generator,
        focal: float = StreetsConfig.focal,
    ):
        self.style, self.h, self.w, self.rng = style, height, width, rng
        self.label = np.full((height, width), SKY, dtype=np.uint8)
        self.rgb = np.zeros((height, width, 3), dtype=np.float32)
        self.f = focal * width
        self.cx = width / 2 + rng.uniform(-0.03, 0.03) * width
        self.yh = height * rng.uniform(*style.horizon)
        self.hc = rng.uniform(*style.camera_height)
        self.rows = np.arange(height, dtype=np.float32)[:, None] + 0.5
        self.cols = np.arange(width, dtype=np.float32)[None, :] + 0.5

    # ------------------------------------------------------------------ helpers
    def colour(self, cls: int, jitter: float = 0.08) -> np.ndarray:
        options = self.style.palette[cls]
        base = np.asarray(options[self.rng.integers(len(options))], dtype=np.float32)
        return base * self.rng.uniform(1 - jitter, 1 + jitter, 3).astype(np.float32)

    def px(self, x: float, z: float) -> float:
        return self.cx + self.f * x / z

    def py(self, y: float, z: float) -> float:
        return self.yh + self.f * (self.hc - y) / z

    def _window(self, x0: float, x1: float, y0: float, y1: float) -> tuple[slice, slice] | None:
        """Pixel slices covering ``[x0, x1) x [y0, y1)``, at least one pixel wide and high."""
        ix0, iy0 = math.floor(x0 + 0.5), math.floor(y0 + 0.5)
        ix1, iy1 = max(ix0 + 1, math.floor(x1 + 0.5)), max(iy0 + 1, math.floor(y1 + 0.5))
        ix0, iy0, ix1, iy1 = max(ix0, 0), max(iy0, 0), min(ix1, self.w), min(iy1, self.h)
        if ix0 >= ix1 or iy0 >= iy1:
            return None
        return slice(iy0, iy1), slice(ix0, ix1)

    def _paint(
        self, cls: int, win: tuple[slice, slice], mask: np.ndarray | None, rgb: np.ndarray
    ) -> None:
        lab, img = self.label[win], self.rgb[win]
        if mask is None:
            lab[...], img[...] = cls, rgb
        else:
            lab[mask], img[mask] = cls, rgb

    def rect(self, cls: int, x0: float, y0: float, x1: float, y1: float, rgb: np.ndarray) -> None:
        win = self._window(x0, x1, y0, y1)
        if win is not None:
            self._paint(cls, win, None, rgb)

    def ellipse(
        self, cls: int, cx: float, cy: float, rx: float, ry: float, rgb: np.ndarray
    ) -> None:
        rx, ry = max(rx, 0.5), max(ry, 0.5)
        win = self._window(cx - rx, cx + rx, cy - ry, cy + ry)
        if win is None:
            return
        yy = np.arange(win[0].start, win[0].stop)[:, None] + 0.5
        xx = np.arange(win[1].start, win[1].stop)[None, :] + 0.5
        mask = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
        self._paint(cls, win, mask if mask.any() else None, rgb)

    def polygon(self, cls: int, points: list[tuple[float, float]], rgb: np.ndarray) -> None:
        """A convex polygon (points in order), painted by half-plane tests."""
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        win = self._window(min(xs), max(xs), min(ys), max(ys))
        if win is None:
            return
        yy = np.arange(win[0].start, win[0].stop)[:, None] + 0.5
        xx = np.arange(win[1].start, win[1].stop)[None, :] + 0.5
        sides = list(zip(points, points[1:] + points[:1], strict=True))
        area = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in sides)
        inside = np.ones(np.broadcast_shapes(yy.shape, xx.shape), dtype=bool)
        for (x0, y0), (x1, y1) in sides:
            inside &= ((x1 - x0) * (yy - y0) - (y1 - y0) * (xx - x0)) * area >= 0
        self._paint(cls, win, inside if inside.any() else None, rgb)

    # ------------------------------------------------------------------ background
    def sky(self) -> None:
        base = self.colour(SKY, 0.05)
        t = np.clip(self.rows / max(self.yh, 1.0), 0, 1)[..., None]
        self.rgb[...] = base * (0.8 + 0.35 * t)

    def far_band(self) -> None:
        """Distant buildings and trees closing the street at the vanishing point."""
        widths = self.rng.integers(max(2, self.w // 40), max(3, self.w // 8), size=self.w)
        edges = np.cumsum(widths)
        n = int(np.searchsorted(edges, self.w)) + 1
        kinds = np.where(self.rng.random(n) < 0.7, BUILDING, VEGETATION)
        heights = self.rng.uniform(10, 45, n)
        seg = np.searchsorted(edges[:n], np.arange(self.w), side="right")
        top = self.py(heights[seg], _FAR)[None, :]
        mask = (self.rows >= top) & (self.rows < self.py(0.0, _FAR))
        sky = np.asarray(self.style.palette[SKY][0], dtype=np.float32)
        colours = np.stack([self.colour(int(k), 0.15) for k in kinds]) * 0.55 + sky * 0.45
        self.label[mask] = np.broadcast_to(kinds[seg][None, :], mask.shape)[mask]
        self.rgb[mask] = np.broadcast_to(colours[seg][None, :, :], (*mask.shape, 3))[mask]

    def ground(self, rc: float, rw: float, sw: float, sides: dict[int, str], median: float) -> None:
        """Road, kerbside sidewalks, terrain beyond them (parks) and lane markings."""
        below = self.rows[:, 0] > self.yh + 0.5
        y = self.rows[below]
        z = self.f * self.hc / (y - self.yh)
        x = (self.cols - self.cx) * z / self.f
        d = x - rc
        outer = np.where(d < 0, sides[-1] == "park", sides[1] == "park")
        lab = np.where(
            np.abs(d) < rw, ROAD, np.where((np.abs(d) < rw + sw) | ~outer, SIDEWALK, TERRAIN)
        )
        if median > 0:
            lab = np.where(np.abs(d) < median / 2, TERRAIN, lab)
        lab = lab.astype(np.uint8)
        rgb = np.zeros((*lab.shape, 3), dtype=np.float32)
        for cls in (ROAD, SIDEWALK, TERRAIN):
            rgb[lab == cls] = self.colour(cls, 0.04)
        shade = np.ones(lab.shape, dtype=np.float32)
        if self.style.sidewalk_tiles:
            tiles = (np.mod(x, 0.6) < 0.05) | (np.mod(z, 0.6) < 0.05)
            shade = np.where((lab == SIDEWALK) & tiles, 0.8, shade)
        kerb = np.abs(np.abs(d) - rw) < 0.12
        shade = np.where(kerb & (lab != TERRAIN), 1.25, shade)
        line = (np.abs(np.abs(d) - (rw - 0.35)) < 0.08) | (
            (np.abs(d - (0 if median <= 0 else median / 2 + 0.3)) < 0.07) & (np.mod(z, 9.0) < 4.5)
        )
        marking = (lab == ROAD) & line
        rgb = rgb * shade[..., None]
        rgb[marking] += (np.float32(235) - rgb[marking]) * self.style.marking_contrast
        self.label[below] = lab
        self.rgb[below] = rgb

    def side_plane(
        self,
        side: int,
        x_plane: float,
        edges: np.ndarray,
        heights: np.ndarray,
        classes: np.ndarray,
        pattern: str,
    ) -> None:
        """A vertical plane along the street (façades, walls, fences, hedges), column by column.

        Segment ``i`` covers depths ``edges[i]..edges[i+1]`` up to ``heights[i]`` metres;
        class -1 leaves a gap. Plane coordinates (depth, height) drive the fine pattern:
        windows on ``"facade"``, a see-through lattice on fences otherwise.
        """
        dx = self.cols[0] - self.cx
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(side * dx > 0.5, self.f * x_plane / dx, 10 * _FAR)
        seg = np.clip(np.searchsorted(edges, z, side="right") - 1, 0, len(heights) - 1)
        cls = np.where((z > 0.3) & (z < edges[-1]), classes[seg], -1)
        colours = np.stack([self.colour(BUILDING if c < 0 else int(c), 0.1) for c in classes])
        used = np.flatnonzero(cls >= 0)
        if used.size == 0:
            return
        cols = slice(used[0], used[-1] + 1)  # work inside the plane's bounding box only
        z, seg, cls = z[cols], seg[cols], cls[cols]
        top, bottom = self.py(heights[seg], z), self.py(0.0, z)
        rows = slice(max(0, math.floor(top[cls >= 0].min())), min(self.h, math.ceil(bottom.max())))
        y = self.rows[rows]
        mask = (cls >= 0)[None, :] & (y >= top[None, :]) & (y < bottom[None, :])
        v = self.hc - (y - self.yh) * z[None, :] / self.f  # height on the plane
        zz = np.broadcast_to(z[None, :], mask.shape)
        rgb = np.broadcast_to(colours[seg][None, :, :], (*mask.shape, 3)).copy()
        if pattern == "facade":
            storey = np.mod(v, 3.2)
            windows = (
                (storey > 1.0)
                & (storey < 2.3)
                & (np.mod(zz, 3.0) < 1.3)
                & (v < heights[seg][None, :] - 0.8)
            )
            rgb[windows] = np.asarray(self.style.window, dtype=np.float32)
        else:
            lattice = (np.mod(zz, 0.3) < 0.06) | (np.mod(v, 0.3) < 0.06) | (np.mod(zz, 2.5) < 0.12)
            see_through = (cls == FENCE)[None, :] & ~lattice
            behind = self.rgb[rows, cols]
            rgb[see_through] = 0.4 * rgb[see_through] + 0.6 * behind[see_through]
            rgb[np.abs(v - heights[seg][None, :]) < 0.1] *= 1.2  # coping / top rail
        self.label[rows, cols][mask] = np.broadcast_to(cls[None, :], mask.shape)[mask]
        self.rgb[rows, cols][mask] = rgb[mask]

    # ------------------------------------------------------------------ objects
    # Objects face the camera at depth z; sizes and heights are in metres.
    def box(
        self,
        cls: int,
        x: float,
        z: float,
        span: tuple[float, float],
        heights: tuple[float, float],
        rgb: np.ndarray,
    ) -> None:
        """Lateral ``x + span[0] .. x + span[1]``, from ``heights[0]`` up to ``heights[1]``."""
        x0, x1 = self.px(x + span[0], z), self.px(x + span[1], z)
        self.rect(cls, x0, self.py(heights[1], z), x1, self.py(heights[0], z), rgb)

    def disc(
        self, cls: int, x: float, z: float, y: float, radii: tuple[float, float], rgb: np.ndarray
    ) -> None:
        s = self.f / z
        self.ellipse(cls, self.px(x, z), self.py(y, z), s * radii[0], s * radii[1], rgb)

    def pole(
        self,
        x: float,
        z: float,
        height: float,
        width: float,
        toward_road: int,
        kit: dict[str, bool],
    ) -> None:
        """A pole, optionally with a lamp arm over the road, a traffic light and a sign."""
        grey = self.colour(POLE)
        self.box(POLE, x, z, (-width / 2, width / 2), (0, height), grey)
        if kit["arm"]:
            reach = toward_road * self.rng.uniform(1.0, 2.5)
            self.box(POLE, x, z, (min(0, reach), max(0, reach)), (height - 0.12, height), grey)
            self.box(POLE, x + reach, z, (-0.25, 0.25), (height - 0.25, height - 0.05), grey)
        if kit["light"]:
            self.traffic_light(x, z, self.rng.uniform(2.6, min(height - 0.3, 4.2)))
        if kit["sign"]:
            self.traffic_sign(x, z, self.rng.uniform(2.0, min(height - 0.2, 3.0)))

    def traffic_light(self, x: float, z: float, y: float) -> None:
        self.box(LIGHT, x, z, (-0.17, 0.17), (y - 0.45, y + 0.45), self.colour(LIGHT))
        lit = self.rng.integers(3)
        for i, lamp in enumerate(((240, 40, 30), (250, 190, 20), (40, 220, 90))):
            rgb = np.asarray(lamp, np.float32) * (1.0 if i == lit else 0.3)
            self.disc(LIGHT, x, z, y + 0.3 - 0.3 * i, (0.1, 0.1), rgb)

    def traffic_sign(self, x: float, z: float, y: float) -> None:
        s, c, cy = self.f / z, self.px(x, z), self.py(y, z)
        r = s * self.rng.uniform(0.3, 0.42)
        face, rim = self.colour(SIGN), np.asarray((245, 245, 240), np.float32)
        shape = self.rng.integers(4)
        if shape == 0:  # round
            self.ellipse(SIGN, c, cy, r, r, face)
            self.ellipse(SIGN, c, cy, r * 0.65, r * 0.65, rim)
        elif shape == 1:  # warning triangle
            self.polygon(SIGN, [(c, cy - r), (c + r, cy + r * 0.8), (c - r, cy + r * 0.8)], face)
            inner = [(c, cy - r * 0.45), (c + r * 0.5, cy + r * 0.5), (c - r * 0.5, cy + r * 0.5)]
            self.polygon(SIGN, inner, rim)
        elif shape == 2:  # rectangular panel
            self.rect(SIGN, c - r, cy - r * 0.7, c + r, cy + r * 0.7, face)
            self.rect(SIGN, c - r * 0.7, cy - r * 0.1, c + r * 0.7, cy + r * 0.1, rim)
        else:  # diamond
            self.polygon(SIGN, [(c, cy - r), (c + r, cy), (c, cy + r), (c - r, cy)], face)

    def person(self, x: float, z: float, cls: int = PERSON, base: float = 0.0) -> None:
        """A pedestrian (or a rider's body when ``base`` lifts it onto a saddle)."""
        h = self.rng.uniform(1.55, 1.9)
        legs, torso = self.colour(cls), self.colour(cls)
        if base == 0.0:
            step = self.rng.uniform(0.0, 0.12)
            for side in (-1, 1):
                xl = side * (0.08 + step * side)
                self.box(cls, x, z, (xl - 0.07, xl + 0.07), (0, 0.47 * h), legs)
        else:
            for side in (-1, 1):
                self.box(
                    cls, x, z, sorted((side * 0.12, side * 0.22)), (base - 0.55, base + 0.3), legs
                )
        y0 = base + (0.47 * h if base == 0.0 else 0.2)
        y1 = y0 + 0.35 * h
        self.box(cls, x, z, (-0.21, 0.21), (y0, y1), torso)
        for side in (-1, 1):  # arms
            self.box(cls, x, z, sorted((side * 0.2, side * 0.28)), (y0 + 0.1, y1 - 0.03), torso)
        self.disc(cls, x, z, y1 + 0.13, (0.1, 0.12), np.asarray((200, 160, 130), np.float32))

    def rider(self, x: float, z: float, motor: bool) -> None:
        """A motorcycle or a bicycle seen from behind (thin!), with its rider."""
        if motor:
            body = self.colour(MOTORCYCLE)
            self.box(MOTORCYCLE, x, z, (-0.09, 0.09), (0, 0.6), np.float32(0.25) * body)
            self.box(MOTORCYCLE, x, z, (-0.3, 0.3), (0.35, 0.95), body)
            self.box(
                MOTORCYCLE, x, z, (-0.08, 0.08), (0.7, 0.8), np.asarray((230, 30, 30), np.float32)
            )
            self.person(x, z, RIDER, base=0.95)
        else:
            frame = self.colour(BICYCLE)
            self.box(BICYCLE, x, z, (-0.03, 0.03), (0, 0.68), np.float32(0.3) * frame)
            self.box(BICYCLE, x, z, (-0.03, 0.03), (0.6, 1.0), frame)
            self.box(BICYCLE, x, z, (-0.28, 0.28), (1.0, 1.05), frame)
            self.person(x, z, RIDER, base=0.9)

    def vehicle(self, cls: int, x: float, z: float, oncoming: bool) -> None:
        """Cars, trucks, buses and trams seen from behind (or from the front when oncoming)."""
        dims = {CAR: (1.8, 1.5), TRUCK: (2.45, 3.6), BUS: (2.55, 3.1), TRAIN: (2.65, 3.5)}[cls]
        width = dims[0] * self.rng.uniform(0.93, 1.07)
        height = dims[1] * self.rng.uniform(0.93, 1.07)
        half = width / 2
        body = self.colour(cls)
        dark = np.asarray((28, 30, 34), np.float32)
        glass = np.asarray(self.style.window, np.float32) * 0.6
        for side in (-1, 1):  # wheels
            xw = side * (half - 0.2)
            self.box(cls, x, z, (xw - 0.14, xw + 0.14), (0, 0.45), dark)
        if cls == CAR:
            self.box(cls, x, z, (-half, half), (0.25, 0.95), body)
            s, c, sill, roof = self.f / z, self.px(x, z), self.py(0.95, z), self.py(height, z)
            cab = [(c - s * (half - 0.12), sill), (c - s * width * 0.36, roof), (c + s * width * 0.36, roof),
                   (c + s * (half - 0.12), sill)]  # fmt: skip
            self.polygon(cls, cab, body)
            self.box(cls, x, z, (-0.33 * width, 0.33 * width), (1.0, height - 0.07), glass)
        else:
            self.box(cls, x, z, (-half, half), (0.35, height), body)
            if cls in (BUS, TRAIN):
                self.box(cls, x, z, (0.12 - half, half - 0.12), (1.3, height - 0.3), glass)
            if cls == TRAIN:  # livery band and pantograph
                self.box(
                    cls, x, z, (-half, half), (0.7, 1.0), np.asarray((200, 40, 40), np.float32)
                )
                self.box(cls, x, z, (-0.03, 0.03), (height, height + 0.9), dark)
                self.box(cls, x, z, (-0.6, 0.6), (height + 0.88, height + 0.95), dark)
            if cls == TRUCK:  # the gap between the rear doors
                self.box(cls, x, z, (-0.02, 0.02), (0.5, height - 0.2), dark)
        lamp = np.asarray((250, 250, 220) if oncoming else (230, 30, 30), np.float32)
        for side in (-1, 1):
            xl = side * (half - 0.2)
            self.box(cls, x, z, (xl - 0.13, xl + 0.13), (0.7, 0.85), lamp)

    def tree(self, x: float, z: float) -> None:
        stem = self.rng.uniform(2.0, 3.2)
        self.box(
            VEGETATION, x, z, (-0.15, 0.15), (0, stem + 0.5), np.asarray((96, 72, 50), np.float32)
        )
        for _ in range(self.rng.integers(3, 6)):
            r = self.rng.uniform(0.9, 2.0)
            dx, y = self.rng.uniform(-1.2, 1.2), stem + r + self.rng.uniform(0.0, 1.8)
            self.disc(VEGETATION, x + dx, z, y, (r, r * 0.9), self.colour(VEGETATION))

    # ------------------------------------------------------------------ composition
    def compose(self) -> None:
        st, rng = self.style, self.rng
        rw, sw = rng.uniform(*st.road_half_width), rng.uniform(*st.sidewalk_width)
        rc = -rw / 2 + rng.uniform(-0.4, 0.4)  # the camera drives in the right-hand lane
        sides = {
            side: "buildings" if rng.random() < st.building_side else "park" for side in (-1, 1)
        }
        median = rng.uniform(1.0, 2.0) if rng.random() < 0.25 else 0.0
        self.sky()
        self.far_band()
        self.ground(rc, rw, sw, sides, median)
        background: list[tuple[float, Callable[[], None]]] = []
        objects: list[tuple[float, Callable[[], None]]] = []
        for side in (-1, 1):
            kerb, outer = rc + side * rw, rc + side * (rw + sw)
            if sides[side] == "buildings":
                self._facades(side, outer + side * rng.uniform(0.0, 2.0))
            else:
                for _ in range(rng.poisson(3)):
                    z = rng.uniform(8, 90)
                    background.append((z, partial(self.tree, outer + side * rng.uniform(2, 8), z)))
            z = rng.uniform(3, st.pole_spacing[0])
            while z < 110:
                kit = {
                    "arm": rng.random() < 0.5,
                    "light": rng.random() < 0.25,
                    "sign": rng.random() < 0.4,
                }
                height = (
                    rng.uniform(4.5, 9.0) if kit["arm"] or kit["light"] else rng.uniform(2.8, 4.5)
                )
                width = rng.uniform(0.12, 0.25)
                objects.append(
                    (z, partial(self.pole, kerb + side * 0.4, z, height, width, -side, kit))
                )
                z += rng.uniform(*st.pole_spacing)
            z = rng.uniform(5, st.tree_spacing[1])
            while z < 80:
                objects.append((z, partial(self.tree, outer - side * 0.8, z)))
                z += rng.uniform(*st.tree_spacing)
            for _ in range(rng.poisson(st.parked_cars / 2)):
                z = rng.uniform(6, 70)
                objects.append((z, partial(self.vehicle, CAR, kerb - side * 1.1, z, side < 0)))
        barriers = [side for side in (-1, 1) if sides[side] == "park"] or [int(rng.choice([-1, 1]))]
        for side in barriers:
            self._barrier(side, rc + side * (rw + sw + 0.2))
        for _ in range(rng.poisson(st.persons)):
            side = int(rng.choice([-1, 1]))
            z = math.exp(rng.uniform(math.log(4), math.log(80)))
            x = (
                rc + side * (rw + rng.uniform(0.4, sw - 0.3))
                if rng.random() < 0.9
                else rng.uniform(rc - rw, rc + rw)
            )
            objects.append((z, partial(self.person, x, z)))
        for _ in range(rng.poisson(st.riders)):
            z = math.exp(rng.uniform(math.log(6), math.log(70)))
            objects.append((z, partial(self.rider, rc + rw - 1.0, z, bool(rng.random() < 0.4))))
        lanes = (rc + rw / 2, rc - rw / 2)
        for _ in range(rng.poisson(st.cars)):
            lane = int(rng.integers(2))
            z = math.exp(rng.uniform(math.log(7), math.log(150)))
            objects.append(
                (z, partial(self.vehicle, CAR, lanes[lane] + rng.uniform(-0.4, 0.4), z, lane == 1))
            )
        for cls, p in ((TRUCK, st.truck), (BUS, st.bus)):
            if rng.random() < p:
                lane = int(rng.integers(2))
                z = rng.uniform(12, 90)
                objects.append((z, partial(self.vehicle, cls, lanes[lane], z, lane == 1)))
        if rng.random() < st.train:
            z = rng.uniform(15, 80)
            objects.append((z, partial(self.vehicle, TRAIN, rc, z, True)))
        for group in (background, objects):
            for _, draw in sorted(group, key=lambda item: -item[0]):
                draw()

    def _segments(self, length: tuple[float, float]) -> np.ndarray:
        edges = [0.0]
        while edges[-1] < _FAR:
            edges.append(edges[-1] + self.rng.uniform(*length))
        return np.asarray(edges)

    def _facades(self, side: int, x_plane: float) -> None:
        edges = self._segments((8, 35))
        n = len(edges) - 1
        classes = np.where(self.rng.random(n) < 0.85, BUILDING, VEGETATION)
        heights = np.where(
            classes == BUILDING, self.rng.uniform(7, 28, n), self.rng.uniform(3, 8, n)
        )
        self.side_plane(side, x_plane, edges, heights, classes, "facade")

    def _barrier(self, side: int, x_plane: float) -> None:
        edges = self._segments((5, 25))
        n = len(edges) - 1
        classes = self.rng.choice(
            np.asarray([WALL, FENCE, VEGETATION, -1]), size=n, p=(0.3, 0.35, 0.2, 0.15)
        )
        heights = np.where(
            classes == VEGETATION, self.rng.uniform(0.8, 1.6, n), self.rng.uniform(0.9, 2.0, n)
        )
        self.side_plane(side, x_plane, edges, heights, classes, "barrier")

    # ------------------------------------------------------------------ camera
    def finish(self) -> np.ndarray:
        """Per-class fine texture, illumination, blur and sensor noise -> uint8 RGB."""
        st, rng = self.style, self.rng
        factor = np.ones((self.h, self.w), dtype=np.float32)
        for name, noise in _texture_fields(self.h, self.w, rng, st.textures).items():
            amplitude = np.zeros(256, dtype=np.float32)  # per trainId
            for cls, terms in st.textures.items():
                amplitude[cls] = sum(a for n, a in terms if n == name)
            factor += amplitude[self.label] * noise
        img = self.rgb
        img *= factor[..., None]
        grey = img.mean(axis=2, keepdims=True) * np.float32(1 - st.saturation)
        img *= np.float32(st.saturation)
        img += grey
        light = np.asarray(st.tint, np.float32) * np.float32(rng.uniform(*st.gain))
        if st.vignette:
            r2 = ((self.cols - self.w / 2) / (self.w / 2)) ** 2 + (
                (self.rows - self.h / 2) / (self.h / 2)
            ) ** 2
            light = light * (1.0 - np.float32(st.vignette / 2) * r2)[..., None]
        img *= light
        np.clip(img, 0, 255, out=img)
        gamma = np.round(255.0 * (np.arange(256) / 255.0) ** st.gamma).astype(np.uint8)
        out = gamma[img.astype(np.uint8)]
        if st.blur_sigma:
            taps = np.exp(-0.5 * (np.arange(-1, 2) / st.blur_sigma) ** 2)
            kernel = np.outer(taps, taps) / taps.sum() ** 2
            out = np.asarray(
                Image.fromarray(out).filter(ImageFilter.Kernel((3, 3), kernel.ravel().tolist(), 1))
            )
        if st.noise_sigma:
            noisy = out + rng.standard_normal(out.shape, dtype=np.float32) * np.float32(
                st.noise_sigma
            )
            out = np.clip(noisy + 0.5, 0, 255).astype(np.uint8)
        return out


def _texture_fields(
    h: int, w: int, rng: np.random.Generator, textures: dict[int, tuple[tuple[str, float], ...]]
) -> dict[str, np.ndarray]:
    """The zero-mean noise fields ``textures`` uses, at their scales, shared by all classes."""

    def upsampled(factor: int) -> np.ndarray:
        small = rng.standard_normal((h // factor + 2, w // factor + 2), dtype=np.float32)
        return np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC))

    makers: dict[str, Callable[[], np.ndarray]] = {
        "grain": lambda: rng.standard_normal((h, w), dtype=np.float32) * np.float32(0.5),
        "blotch": partial(upsampled, 4),
        "cloud": partial(upsampled, 24),
        "vstreak": lambda: rng.standard_normal((1, w), dtype=np.float32) * np.float32(0.6),
        "hstreak": lambda: rng.standard_normal((h, 1), dtype=np.float32) * np.float32(0.6),
    }
    used = sorted({name for terms in textures.values() for name, _ in terms})
    return {name: makers[name]() for name in used}


def render_street(
    domain: str,
    height: int,
    width: int,
    rng: np.random.Generator,
    domain_shift: float = 1.0,
    focal: float = StreetsConfig.focal,
    pixel_level_shift: bool = StreetsConfig.pixel_level_shift,
) -> tuple[np.ndarray, np.ndarray]:
    """One scene of ``domain`` ("source" or "target"): uint8 RGB ``(H, W, 3)`` and trainIds ``(H, W)``.

    ``domain_shift`` scales how far the target style lies from the source (see
    :func:`shifted_style`); ``focal`` and ``pixel_level_shift`` as in :class:`StreetsConfig`.
    """
    style = SOURCE_STYLE if domain == "source" else shifted_style(domain_shift)
    if domain != "source" and not pixel_level_shift:
        style = coarse_shift(style)
    return render_styled(style, height, width, rng, focal)


def render_styled(
    style: DomainStyle,
    height: int,
    width: int,
    rng: np.random.Generator,
    focal: float = StreetsConfig.focal,
) -> tuple[np.ndarray, np.ndarray]:
    """One scene drawn in ``style`` (for example a :func:`partial_shift`): RGB and trainIds."""
    scene = _Scene(style, height, width, rng, focal)
    scene.compose()
    return scene.finish(), scene.label


def render_night(image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The scene of ``image`` at night: uint8 RGB ``(H, W, 3)`` from the day image and its label.

    Dim bluish moonlight over a dark sky, traffic lights that glow, and the stronger sensor
    noise and blur of a long exposure; the labels stay those of the day image.
    """
    linear = (image.astype(np.float32) / np.float32(255)) ** np.float32(2.2)
    moon = np.asarray((0.55, 0.7, 1.1), np.float32) * np.float32(rng.uniform(0.07, 0.11))
    night = linear * moon
    night[label == SKY] *= np.float32(0.3)
    lit = label == LIGHT
    if lit.any():
        lamp = np.asarray(((1.0, 0.25, 0.1), (0.2, 1.0, 0.4), (1.0, 0.7, 0.1)), np.float32)
        colour = lamp[rng.integers(len(lamp))]
        mask = Image.fromarray(lit.astype(np.uint8) * np.uint8(255))
        glow = np.asarray(mask.filter(ImageFilter.GaussianBlur(3)), np.float32) / np.float32(255)
        night += (np.float32(0.9) * lit + np.float32(1.5) * glow)[..., None] * colour
    out = np.clip(night, 0, 1) ** np.float32(1 / 2.2) * np.float32(255)
    out += rng.standard_normal(out.shape, dtype=np.float32) * np.float32(6.0)
    out = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    return np.asarray(Image.fromarray(out).filter(ImageFilter.GaussianBlur(0.6)))


CONDITIONS: dict[str, Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]] = {
    "night": render_night
}


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of one image, independent of every other image."""
    return np.random.default_rng([seed, list(SPLIT_DOMAINS).index(split), index])


def _write_one(root: Path, config: StreetsConfig, split: str, index: int) -> None:
    base, condition = CONDITION_SUBSETS.get(split, (split, None))
    image, label = render_street(
        SPLIT_DOMAINS[base],
        config.height,
        config.width,
        image_rng(config.seed, base, index),
        config.domain_shift,
        config.focal,
        config.pixel_level_shift,
    )
    if condition is not None:
        # Its own stream (after the splits' ones), so the scene itself is drawn as in ``base``.
        rng = np.random.default_rng(
            [config.seed, len(SPLIT_DOMAINS) + list(CONDITION_SUBSETS).index(split), index]
        )
        image = CONDITIONS[condition](image, label, rng)
    name = f"{index:05d}.png"
    save_png(image, root / split / "images" / name, "a drawn image", compress_level=1)
    save_png(label, root / split / "labels" / name, "a drawn label")


def save_png(pixels: np.ndarray, path: Path, what: str, **options: Any) -> None:
    """Save with Pillow; its write errors (a full disk) name no file, these do."""
    try:
        Image.fromarray(pixels).save(path, **options)
    except OSError as err:
        raise OSError(err.errno, f"cannot write {what} ({err.strerror or err})", str(path)) from err


def write_benchmark(
    root: Path, config: StreetsConfig, workers: int = 1, conditions: tuple[str, ...] = ()
) -> None:
    """Draw every subset (the splits and the ``conditions`` subsets) into
    ``root/<subset>/{images,labels}/NNNNN.png`` plus the fingerprint."""
    jobs = []
    for split, count in config.subset_sizes(conditions).items():
        for sub in ("images", "labels"):
            (root / split / sub).mkdir(parents=True, exist_ok=True)
        jobs += [(split, i) for i in range(count)]
    pool = ThreadPoolExecutor(max(1, workers))
    try:
        list(pool.map(lambda job: _write_one(root, config, *job), jobs))
    finally:  # stopped (SIGTERM, an error): do not draw the queued images first
        pool.shutdown(wait=True, cancel_futures=True)
    payload = {
        "fingerprint": config.fingerprint(conditions),
        "version": GENERATOR_VERSION,
        **config.described(conditions),
    }
    (root / FINGERPRINT_FILE).write_text(json.dumps(payload, indent=2, sort_keys=True))
    logger.info("Drew %d embedded street scenes into %s", len(jobs), root)


def _stored_description(root: Path) -> dict[str, Any]:
    """The fingerprint file of a drawn benchmark, or {} when there is none."""
    try:
        return json.loads((root / FINGERPRINT_FILE).read_text())
    except (OSError, ValueError):
        return {}


def read_fingerprint(root: Path) -> str | None:
    """The fingerprint stored with a drawn benchmark, or None when there is none."""
    return _stored_description(root).get("fingerprint")


def drew(config: StreetsConfig, root: Path) -> bool:
    """Whether ``config`` drew the benchmark in ``root``, whichever condition subsets it
    was drawn with: scenes drawn later from ``config`` then belong to that benchmark."""
    stored = _stored_description(root)
    return stored.get("fingerprint") == config.fingerprint(tuple(stored.get("conditions", ())))

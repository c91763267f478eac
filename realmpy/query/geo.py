"""Geospatial shapes for ``geoWithin`` as Realm's: a point is an embedded
object shaped like GeoJSON (``type == "Point"``, ``coordinates == [longitude,
latitude(, altitude)]``, degrees); the shapes are a box (two corners), a
circle (centre and radius in radians along the sphere) and a polygon (an
outer ring and holes, each closed: first point == last point).

Containment: a box is a longitude/latitude rectangle, its edges included
(one whose west edge is east of its east edge crosses the antimeridian); a
circle holds the points whose great-circle distance from its centre is at
most its radius; a polygon holds the points strictly inside its outer ring
and outside its holes.  Realm (S2) draws a polygon's edges as geodesics,
realmpy as straight lines in longitude/latitude: the same for the small
areas queries usually name, different near the edges of a polygon many
degrees wide (documented in docs/objects.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

__all__ = ["GeoBox", "GeoCircle", "GeoPoint", "GeoPolygon", "Shape", "contains", "point_of"]


def _fmt(x: float) -> str:
    return repr(float(x)).removesuffix(".0") if float(x).is_integer() else repr(float(x))


@dataclass(frozen=True, slots=True)
class GeoPoint:
    """A point in degrees; ``ValueError`` outside longitude [-180, 180],
    latitude [-90, 90]."""

    longitude: float
    latitude: float

    def __post_init__(self) -> None:
        for name, v, limit in (("longitude", self.longitude, 180), ("latitude", self.latitude, 90)):
            if isinstance(v, bool) or not isinstance(v, (int, float, Decimal)):
                raise ValueError(f"a {name} is a number, not {type(v).__name__}")
            if not -limit <= float(v) <= limit:
                raise ValueError(f"{name} {v} is outside [-{limit}, {limit}]")

    def __str__(self) -> str:
        return f"[{_fmt(self.longitude)}, {_fmt(self.latitude)}]"


@dataclass(frozen=True, slots=True)
class GeoBox:
    """``geoBox(bottom_left, top_right)``."""

    bottom_left: GeoPoint
    top_right: GeoPoint

    def __str__(self) -> str:
        return f"geoBox({self.bottom_left}, {self.top_right})"


@dataclass(frozen=True, slots=True)
class GeoCircle:
    """``geoCircle(center, radius_radians)``."""

    center: GeoPoint
    radius_radians: float

    def __post_init__(self) -> None:
        r = self.radius_radians
        if isinstance(r, bool) or not isinstance(r, (int, float, Decimal)) or not float(r) >= 0:
            raise ValueError(f"a circle's radius is a number of radians >= 0, not {r!r}")

    def __str__(self) -> str:
        return f"geoCircle({self.center}, {_fmt(self.radius_radians)})"


@dataclass(frozen=True, slots=True)
class GeoPolygon:
    """``geoPolygon({outer ring}, {hole}, ...)``; each ring closed, 4+ points."""

    rings: tuple[tuple[GeoPoint, ...], ...]

    def __post_init__(self) -> None:
        if not self.rings:
            raise ValueError("a polygon needs an outer ring")
        for ring in self.rings:
            if len(ring) < 4 or ring[0] != ring[-1]:
                raise ValueError(
                    "each ring of a polygon has at least 4 points and ends where it starts"
                )

    def __str__(self) -> str:
        rings = ", ".join("{" + ", ".join(str(p) for p in r) + "}" for r in self.rings)
        return f"geoPolygon({rings})"


Shape = GeoBox | GeoCircle | GeoPolygon


def point_of(kind: Any, coordinates: Any) -> GeoPoint | None:
    """The point an embedded GeoJSON-like object holds (None if it holds none)."""
    if kind != "Point" or coordinates is None:
        return None
    try:
        c = list(coordinates)
        return GeoPoint(float(c[0]), float(c[1])) if len(c) >= 2 else None
    except (TypeError, ValueError):
        return None


def contains(shape: Shape, p: GeoPoint) -> bool:
    if isinstance(shape, GeoBox):
        lo, hi = shape.bottom_left, shape.top_right
        if not lo.latitude <= p.latitude <= hi.latitude:
            return False
        if lo.longitude <= hi.longitude:
            return lo.longitude <= p.longitude <= hi.longitude
        return p.longitude >= lo.longitude or p.longitude <= hi.longitude  # over 180
    if isinstance(shape, GeoCircle):
        return _distance(shape.center, p) <= shape.radius_radians
    outer, *holes = shape.rings
    return _inside(outer, p) and not any(_inside(h, p) or _on_ring(h, p) for h in holes)


def _distance(a: GeoPoint, b: GeoPoint) -> float:
    """Great-circle distance in radians (haversine)."""
    la1, la2 = math.radians(a.latitude), math.radians(b.latitude)
    dla = la2 - la1
    dlo = math.radians(b.longitude - a.longitude)
    h = math.sin(dla / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin(dlo / 2) ** 2
    return 2 * math.asin(min(1.0, math.sqrt(h)))


def _on_ring(ring: Sequence[GeoPoint], p: GeoPoint) -> bool:
    x, y = p.longitude, p.latitude
    for a, b in zip(ring, ring[1:], strict=False):
        cross = (b.longitude - a.longitude) * (y - a.latitude) - (b.latitude - a.latitude) * (
            x - a.longitude
        )
        if (
            abs(cross) <= 1e-12
            and min(a.longitude, b.longitude) <= x <= max(a.longitude, b.longitude)
            and min(a.latitude, b.latitude) <= y <= max(a.latitude, b.latitude)
        ):
            return True
    return False


def _inside(ring: Sequence[GeoPoint], p: GeoPoint) -> bool:
    """Strictly inside ``ring`` (a point on an edge is not)."""
    if _on_ring(ring, p):
        return False
    x, y = p.longitude, p.latitude
    inside = False
    for a, b in zip(ring, ring[1:], strict=False):
        if (a.latitude > y) != (b.latitude > y):
            at = a.longitude + (y - a.latitude) * (b.longitude - a.longitude) / (
                b.latitude - a.latitude
            )
            if x < at:
                inside = not inside
    return inside

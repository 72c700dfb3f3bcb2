"""Lighting and sensor behaviour per condition (day, night, fog), drawn from a seed.

Kept apart from the world: the same layout is rendered under any condition, and a condition changes only how
the scene looks and how the sensors fail (depth range, holes, darkness), never where things are.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .world import Layout


CONDITIONS = ("day", "night", "fog")
#: How often each condition is drawn when a caller leaves it to the seed.
CONDITION_WEIGHTS = (0.6, 0.2, 0.2)


@dataclass
class Look:
    """Lighting and sensor behaviour of one condition."""

    condition: str
    sun: np.ndarray
    ambient: float
    sun_strength: float
    sky_zenith: np.ndarray
    sky_horizon: np.ndarray
    clouds: float
    fog_beta: float
    fog_rgb: np.ndarray
    exposure: float
    white_balance: np.ndarray
    noise_dn: float
    headlight_gain: float
    streetlight_gain: float
    emissive_gain: float
    t_ambient: float
    t_sky: float
    road_heat: float
    sun_heat: float
    depth_range: float
    depth_noise: float
    depth_holes: float
    dark_depth_level: float


def make_look(rng: np.random.Generator, condition: str, layout: Layout) -> Look:
    elevation = math.radians(rng.uniform(20, 65))
    azimuth = rng.uniform(-math.pi, math.pi)
    sun = np.array([math.cos(elevation) * math.sin(azimuth), math.sin(elevation),
                    math.cos(elevation) * math.cos(azimuth)], dtype=np.float64)
    t_amb = float(rng.uniform(12.0, 28.0) if condition == "day" else rng.uniform(0.0, 15.0) if condition == "night"
                  else rng.uniform(2.0, 14.0))
    wb = np.clip(1.0 + rng.normal(0.0, 0.04, 3), 0.85, 1.15)
    base = dict(
        condition=condition, sun=sun, clouds=0.0, fog_beta=0.0, fog_rgb=np.zeros(3), white_balance=wb,
        headlight_gain=0.0, streetlight_gain=0.0, emissive_gain=0.0, t_ambient=t_amb,
        depth_range=float(rng.uniform(20.0, 40.0)), depth_noise=0.01, depth_holes=float(rng.uniform(0.005, 0.025)),
        dark_depth_level=0.0,
    )
    if condition == "day":
        overcast = rng.random() < 0.3
        clouds = 0.0 if overcast else float(rng.uniform(0.0, 0.5))
        return Look(
            ambient=float(rng.uniform(0.75, 0.9) if overcast else rng.uniform(0.45, 0.6)),
            sun_strength=float(rng.uniform(0.05, 0.15) if overcast else rng.uniform(0.45, 0.7)),
            sky_zenith=np.array([0.6, 0.62, 0.66]) if overcast else np.array([0.3, 0.5, 0.85]) * rng.uniform(0.9, 1.1),
            sky_horizon=np.array([0.8, 0.8, 0.82]) if overcast else np.array([0.72, 0.8, 0.9]),
            exposure=float(rng.uniform(0.85, 1.15)), noise_dn=float(rng.uniform(1.0, 2.5)),
            t_sky=t_amb - (8.0 if overcast else 30.0), road_heat=float(rng.uniform(4.0, 8.0) if not overcast else 3.0),
            sun_heat=float(rng.uniform(2.0, 5.0)), **{**base, "clouds": clouds})
    if condition == "night":
        return Look(
            ambient=float(rng.uniform(0.01, 0.04)), sun_strength=0.0,
            sky_zenith=np.array([0.01, 0.012, 0.03]), sky_horizon=np.array([0.04, 0.035, 0.05]) * (
                2.5 if layout.road.street_lights else 1.0),
            exposure=float(rng.uniform(0.8, 1.2)), noise_dn=float(rng.uniform(3.0, 6.0)),
            t_sky=t_amb - 30.0, road_heat=float(rng.uniform(2.0, 5.0)), sun_heat=0.0,
            **{**base, "headlight_gain": float(rng.uniform(0.25, 0.45)),
               "streetlight_gain": float(rng.uniform(0.04, 0.15)) if layout.road.street_lights else 0.0,
               "emissive_gain": 1.0, "depth_noise": 0.025, "dark_depth_level": float(rng.uniform(0.05, 0.08))})
    if condition == "fog":
        visibility = float(rng.uniform(25.0, 80.0))
        grey = rng.uniform(0.7, 0.85)
        return Look(
            ambient=float(rng.uniform(0.75, 0.9)), sun_strength=0.05,
            sky_zenith=np.full(3, grey), sky_horizon=np.full(3, grey), exposure=float(rng.uniform(0.9, 1.1)),
            noise_dn=float(rng.uniform(1.5, 3.0)), t_sky=t_amb - 3.0, road_heat=1.5, sun_heat=0.5,
            **{**base, "fog_beta": 3.0 / visibility, "fog_rgb": np.array([grey, grey, grey * 1.02]),
               "depth_range": float(min(base["depth_range"], max(12.0, 0.6 * visibility))), "depth_noise": 0.018,
               "emissive_gain": 0.3})
    raise ValueError(f"unknown condition {condition!r}; expected one of {', '.join(CONDITIONS)}")


def check_condition(condition: str) -> None:
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}; expected one of {', '.join(CONDITIONS)}")

"""A small building-energy site, simulated so that its failures can be predicted.

The site has a load, a PV inverter, a battery and a diesel generator behind a grid
connection with zero export (the grid only imports: surplus PV charges the battery or is
curtailed). Four power signals are measured every ``Tu`` seconds, in kW:

- ``battery_active_power``: positive discharging, negative charging. It charges from PV
  surplus around midday and discharges in the evening.
- ``pv_active_power``: a daily bell under slowly drifting clouds, curtailed to what the
  site can absorb.
- ``generator_active_power``: runs on a schedule every evening (ramping up, then holding
  a set point with noise), 0 otherwise.
- ``grid_active_power``: whatever the others leave uncovered, ``max(0, load - pv -
  generator - battery)``; it is computed after the faults, so a lost generator shows up
  here.

This is not a power-flow model; it is just enough structure that the event stream looks
like a real one (daily cycles, noise, chatter at band edges, sensor dropouts) while the
two kinds of fault are predictable from what precedes them:

- **battery surge**: for 15–22 minutes the battery controller oscillates (a sinusoid of
  2–3.5 min period whose amplitude builds up to 9 kW over the first 40% of that time,
  clipped to the inverter's normal limits), then the power surges far above anything normal for 2–5 minutes (the only
  time the signal reaches its top band), then the battery trips offline for 10–20 minutes.
- **generator trip**: during the evening run the generator hunts (the same kind of
  oscillation, 18 kW) for 15–22 minutes, then trips to 0 for 10–20 minutes and ramps
  back. The grid picks up the lost power, which takes it to its top band: the precursor
  is in one signal and the failure in another.

Everything random comes from one seed, split into independent streams per component
(``numpy.random.SeedSequence.spawn``), so changing, say, the fault rate does not change
the noise of the load.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from demo.artifacts import DemoError

SIGNALS = ("battery_active_power", "pv_active_power", "generator_active_power", "grid_active_power")
FAULT_KINDS = ("battery", "generator")

DAY = 86400
HOUR = 3600
MINUTE = 60

# Shapes of the normal day (kW, hours of the UTC day).
LOAD_BASE, LOAD_MORNING, LOAD_EVENING = 22.0, 14.0, 45.0
PV_PEAK = 55.0
GENERATOR_HOURS = (17.0, 23.0)
GENERATOR_RAMP = 20 * MINUTE
BATTERY_CHARGE_HOURS, BATTERY_DISCHARGE_HOURS = (10.0, 15.0), (17.0, 23.0)
BATTERY_LIMITS = (-15.0, 12.0)            # inverter limits in normal operation
GENERATOR_LIMIT = 50.0

# Faults (seconds unless stated).
PRECURSOR = (15 * MINUTE, 22 * MINUTE)
OSCILLATION_PERIOD = (120, 210)
OSCILLATION_BUILDUP = 0.4                 # share of the precursor over which it grows
BATTERY_OSCILLATION_KW, GENERATOR_OSCILLATION_KW = 9.0, 18.0
BATTERY_SURGE_KW = 24.0
SURGE = (2 * MINUTE, 5 * MINUTE)
OUTAGE = (10 * MINUTE, 20 * MINUTE)
GENERATOR_FAULT_HOURS = (18.7, 20.3)      # the evening peak: the lost power tops the grid range
FAULT_MIN_GAP = 2 * HOUR                  # keeps each PW about one fault
DROPOUT = (2, 12)                         # samples


@dataclass(frozen=True)
class SimulationConfig:
    """``start`` is the epoch second of the first sample; rates are per day (dropouts
    per day and per signal)."""

    seed: int
    start: int
    days: float
    Tu: int
    battery_faults_per_day: float
    generator_faults_per_day: float
    dropouts_per_day: float

    def __post_init__(self):
        if self.Tu <= 0 or self.days <= 0:
            raise DemoError(f"simulation needs Tu > 0 and days > 0, got Tu={self.Tu}, days={self.days}")


@dataclass(frozen=True)
class Fault:
    kind: str
    precursor_start: int   # epoch seconds
    onset: int             # epoch seconds: the surge or trip begins


@dataclass(frozen=True)
class Simulation:
    segs: np.ndarray                   # int64 epoch seconds, every Tu
    signals: dict[str, np.ndarray]     # float64 kW per SIGNALS name, NaN during dropouts
    faults: tuple[Fault, ...]


def simulate(config: SimulationConfig) -> Simulation:
    n = int(round(config.days * DAY / config.Tu))
    segs = config.start + config.Tu * np.arange(n, dtype=np.int64)
    streams = dict(zip(
        ("load", "pv", "generator", "battery", "grid", "faults", "fault_shapes", "dropouts"),
        (np.random.default_rng(s) for s in np.random.SeedSequence(config.seed).spawn(8))))
    hours = (segs % DAY) / HOUR
    day = (segs - segs[0]) // DAY

    load = _load(hours, day, config.Tu, streams["load"])
    pv_available = _pv_available(hours, day, config.Tu, streams["pv"])
    generator, running_since = _generator(segs, hours, day, streams["generator"])
    battery = _battery_dispatch(hours, day, pv_available, load, streams["battery"])

    faults = _schedule_faults(segs, hours, running_since, config, streams["faults"])
    shapes = streams["fault_shapes"]
    for fault in faults:
        if fault.kind == "battery":
            _battery_surge(segs, battery, fault, shapes)
        else:
            _generator_trip(segs, generator, fault, shapes)

    charging = np.clip(-battery, 0.0, None)
    pv = np.minimum(pv_available, load + charging)
    grid_noise = streams["grid"].normal(0.0, 0.3, len(segs))
    grid = np.clip(load - pv - generator - battery + grid_noise, 0.0, None)
    pv = np.clip(pv + streams["pv"].normal(0.0, 0.4, len(segs)), 0.0, None)

    signals = {"battery_active_power": battery, "pv_active_power": pv,
               "generator_active_power": generator, "grid_active_power": grid}
    _dropouts(signals, config, streams["dropouts"])
    return Simulation(segs=segs, signals=signals, faults=tuple(faults))


def _bump(hours: np.ndarray, centre: float, width: float) -> np.ndarray:
    distance = np.abs((hours - centre + 12.0) % 24.0 - 12.0)
    return np.exp(-0.5 * (distance / width) ** 2)


def _slow_noise(rng, n: int, Tu: int, sigma: float, timescale: float) -> np.ndarray:
    """Noise that wanders over ``timescale`` seconds (white noise through an exponential
    filter), so that the load and the clouds drift instead of flickering."""
    steps = max(timescale / Tu, 1.0)
    kernel = np.exp(-np.arange(int(5 * steps) + 1) / steps)
    kernel *= sigma / np.sqrt(np.sum(kernel ** 2))
    white = rng.normal(0.0, 1.0, n + len(kernel) - 1)
    return np.convolve(white, kernel, mode="valid")


def _per_day(rng, day: np.ndarray, low: float, high: float) -> np.ndarray:
    return rng.uniform(low, high, int(day[-1]) + 1)[day]


def _load(hours, day, Tu, rng) -> np.ndarray:
    shape = LOAD_BASE + LOAD_MORNING * _bump(hours, 8.0, 1.5) + LOAD_EVENING * _bump(hours, 19.5, 2.5)
    return (shape * _per_day(rng, day, 0.95, 1.05)
            + _slow_noise(rng, len(hours), Tu, 1.5, 20 * MINUTE) + rng.normal(0.0, 0.4, len(hours)))


def _pv_available(hours, day, Tu, rng) -> np.ndarray:
    sun = np.clip(np.sin(np.pi * (hours - 6.0) / 12.0), 0.0, None) ** 1.5
    clouds = np.clip(0.85 + _slow_noise(rng, len(hours), Tu, 0.2, 40 * MINUTE), 0.2, 1.0)
    return PV_PEAK * _per_day(rng, day, 0.6, 1.0) * sun * clouds


def _generator(segs, hours, day, rng) -> tuple[np.ndarray, np.ndarray]:
    """The scheduled evening run, and for each sample the time the run started (-1 when
    stopped) so that faults can be placed after the ramp."""
    start_h, stop_h = GENERATOR_HOURS
    running = (hours >= start_h) & (hours < stop_h)
    run_start = segs - ((hours - start_h) * HOUR).astype(np.int64)
    ramp = np.clip((segs - run_start) / GENERATOR_RAMP, 0.0, 1.0)
    set_point = _per_day(rng, day, 43.0, 47.0)
    power = np.where(running, set_point * ramp + rng.normal(0.0, 0.6, len(segs)), 0.0)
    return np.clip(power, 0.0, GENERATOR_LIMIT), np.where(running, run_start, -1)


def _battery_dispatch(hours, day, pv_available, load, rng) -> np.ndarray:
    charge = (hours >= BATTERY_CHARGE_HOURS[0]) & (hours < BATTERY_CHARGE_HOURS[1])
    discharge = (hours >= BATTERY_DISCHARGE_HOURS[0]) & (hours < BATTERY_DISCHARGE_HOURS[1])
    surplus = np.clip(pv_available - load, 0.0, -BATTERY_LIMITS[0])
    power = np.where(charge, -surplus, 0.0) + np.where(discharge, _per_day(rng, day, 5.0, 7.0), 0.0)
    return power + rng.normal(0.0, 0.25, len(hours))


def _schedule_faults(segs, hours, running_since, config: SimulationConfig, rng) -> list[Fault]:
    """Battery surges at any time, at the configured rate; at most one generator trip per
    evening (``generator_faults_per_day`` is its probability), after the run's ramp and
    near the evening peak, when losing the generator tops the grid's range. Faults are
    thinned to stay ``FAULT_MIN_GAP`` apart (one fault per prediction window keeps the
    labels unambiguous) and keep their whole precursor inside the data."""
    first, last = int(segs[0]), int(segs[-1])
    candidates = []
    battery_count = rng.poisson(config.battery_faults_per_day * config.days)
    for onset in rng.integers(first + PRECURSOR[1] + HOUR, last - HOUR, battery_count):
        candidates.append((int(onset), "battery"))
    possible = ((hours >= GENERATOR_FAULT_HOURS[0]) & (hours < GENERATOR_FAULT_HOURS[1])
                & (running_since >= 0) & (segs - running_since >= GENERATOR_RAMP + PRECURSOR[1])
                & (segs <= last - HOUR))
    day = (segs - first) // DAY
    for evening in np.unique(day[possible]):
        trip = rng.random() < config.generator_faults_per_day
        moments = segs[possible & (day == evening)]
        onset = moments[rng.integers(0, len(moments))]
        if trip:
            candidates.append((int(onset), "generator"))

    faults, previous = [], None
    for onset, kind in sorted(candidates):
        if previous is not None and onset - previous < FAULT_MIN_GAP:
            continue
        onset = first + (onset - first) // config.Tu * config.Tu
        lead = int(rng.uniform(*PRECURSOR))
        faults.append(Fault(kind=kind, precursor_start=onset - lead, onset=onset))
        previous = onset
    return faults


def _oscillation(segs, fault: Fault, amplitude: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """The growing oscillation before a fault: (sample mask, added kW)."""
    mask = (segs >= fault.precursor_start) & (segs < fault.onset)
    elapsed = (segs[mask] - fault.precursor_start) / (fault.onset - fault.precursor_start)
    period = rng.uniform(*OSCILLATION_PERIOD)
    phase = rng.uniform(0.0, 2 * np.pi)
    envelope = amplitude * np.minimum(1.0, elapsed / OSCILLATION_BUILDUP)
    wave = envelope * np.sin(2 * np.pi * (segs[mask] - fault.onset) / period + phase)
    return mask, wave


def _battery_surge(segs, battery, fault: Fault, rng) -> None:
    mask, wave = _oscillation(segs, fault, BATTERY_OSCILLATION_KW, rng)
    battery[mask] = np.clip(battery[mask] + wave, *BATTERY_LIMITS)
    surge_end = fault.onset + int(rng.uniform(*SURGE))
    outage_end = surge_end + int(rng.uniform(*OUTAGE))
    surge = (segs >= fault.onset) & (segs < surge_end)
    battery[surge] = BATTERY_SURGE_KW + rng.normal(0.0, 0.5, int(surge.sum()))
    outage = (segs >= surge_end) & (segs < outage_end)
    battery[outage] = rng.normal(0.0, 0.1, int(outage.sum()))


def _generator_trip(segs, generator, fault: Fault, rng) -> None:
    mask, wave = _oscillation(segs, fault, GENERATOR_OSCILLATION_KW, rng)
    generator[mask] = np.clip(generator[mask] + wave, 0.0, GENERATOR_LIMIT)
    outage_end = fault.onset + int(rng.uniform(*OUTAGE))
    after = segs >= fault.onset
    restart = np.clip((segs[after] - outage_end) / GENERATOR_RAMP, 0.0, 1.0)
    # the restart ramps from 0; a run that ends before the ramp completes just stops
    generator[after] = generator[after] * restart


def _dropouts(signals: dict, config: SimulationConfig, rng) -> None:
    """Short sensor dropouts (NaN samples): the ``*_NaN_NaN`` events of the stream."""
    for name in SIGNALS:
        values = signals[name]
        for _ in range(rng.poisson(config.dropouts_per_day * config.days)):
            start = int(rng.integers(0, len(values)))
            values[start:start + int(rng.integers(*DROPOUT, endpoint=True))] = np.nan

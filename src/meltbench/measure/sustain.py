"""Time series and throttling verdict for sustained runs (pure code: no clocks, no I/O).

A sustained run (``meltbench sustain``) generates back to back for minutes. The worker
records, per request, its start and one timestamp per generated token; a sensor sampler
records temperature (C), frequency (MHz) and power (W) channels. All timestamps are
nanoseconds from the same monotonic clock (``time.perf_counter_ns``), as in
:mod:`meltbench.measure.timing`.

Everything is binned on one time axis: bin ``k`` covers ``[t0 + k*bin, t0 + (k+1)*bin)``
and is reported at its mid time, in seconds from ``t0``. A bin with nothing in it is
``None`` ("not measured"), never a made-up 0.

- :func:`decode_rate_series`: decode tok/s per bin, from decode gaps only (consecutive
  tokens of one request; the prefill and the pause between requests are excluded). Each
  gap goes to the bin holding its end time; the bin's rate is ``gaps / summed gap
  seconds``, i.e. a token-weighted rate, the same definition as ``decode_tps`` of
  :mod:`meltbench.metrics` applied to the gaps that end in the bin.
- :func:`channel_series` / :func:`combine_series` / :func:`combine_max`: sensor channels
  on the same bins (temperatures: the hottest channel, as ``temp_max_c`` is "hottest
  sensor").
- :func:`detect_throttling`: the verdict, see its docstring for the rules and constants.
- :func:`summarize_sustain`: all of it as one JSON-ready dict for the results store.

Why this matters: MELT (Laskaridis et al., "MELTing point: Mobile Evaluation of Language
Transformers", MobiCom 2024, arXiv:2403.12844) found that the thermal behaviour of phones
makes continuous on-device LLM execution "elusive"; a later study of sustained edge
inference (arXiv:2603.23640) reports a phone losing nearly half its throughput within
two iterations. A single short measurement hides this; a time series shows it.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

__all__ = [
    "MIN_PHASE_BINS",
    "ThrottleVerdict",
    "channel_series",
    "combine_max",
    "combine_series",
    "decode_rate_series",
    "detect_throttling",
    "summarize_sustain",
]

_NS_PER_S = 1_000_000_000

#: Fewest non-empty bins the initial and the steady phase each need for a verdict: a
#: median of 3 values tolerates one outlier bin; fewer cannot tell a blip from a level.
MIN_PHASE_BINS = 3

Series = list[tuple[float, float | None]]
"""A binned time series: ``(mid time in s from t0, value or None)`` per bin, in order."""

Channel = tuple[Sequence[int], Sequence[float | None]]
"""One raw sensor channel: ``(t_ns, values)`` of equal length."""

Reduce = Literal["mean", "max", "min"]


def _bin_ns(bin_s: float) -> int:
    if not (isinstance(bin_s, int | float) and math.isfinite(bin_s) and bin_s > 0):
        raise ValueError(f"bin_s must be a positive number of seconds, got {bin_s!r}")
    bin_ns = round(bin_s * _NS_PER_S)
    if bin_ns < 1:
        raise ValueError(f"bin_s must be at least 1 ns, got {bin_s!r}")
    return bin_ns


def _n_bins(last_index: int, t0_ns: int, bin_ns: int, end_ns: int | None) -> int:
    """Number of bins: up to ``end_ns`` if given, else up to the last event's bin."""
    if end_ns is not None:
        if end_ns < t0_ns:
            raise ValueError(f"end_ns ({end_ns}) must not be before t0_ns ({t0_ns})")
        return -(-(end_ns - t0_ns) // bin_ns)  # ceil
    return last_index + 1


def _mid_s(k: int, bin_ns: int) -> float:
    return (k * bin_ns + bin_ns / 2) / _NS_PER_S


def decode_rate_series(
    requests: Sequence[tuple[int, Sequence[int]]],
    t0_ns: int,
    bin_s: float,
    *,
    end_ns: int | None = None,
) -> Series:
    """Decode tok/s over time, binned.

    Args:
        requests: ``(t_start_ns, token_ns)`` per request, ``token_ns`` being the time each
            generated token became available, in generation order. Requests may be in any
            order; only gaps between consecutive tokens of one request count.
        t0_ns: start of the time axis (start of the sustained run), ns.
        bin_s: bin width, seconds (> 0).
        end_ns: end of the time axis, ns (keyword). Bins then cover ``[t0_ns, end_ns)``
            (the last one possibly partial, still reported at the mid time of a full
            bin) and gaps ending at or after ``end_ns`` are dropped. Default: up to the
            bin of the last gap. Gaps ending before ``t0_ns`` are always dropped.

    Returns:
        ``[(t_s, tps or None), ...]``: one entry per bin, ``t_s`` its mid time in seconds
        from ``t0_ns``, ``tps = gaps / summed gap seconds`` of the gaps that end in the
        bin; ``None`` for a bin with no gap (or only zero-length gaps). Empty if there is
        no gap at all and no ``end_ns``.

    Raises:
        ValueError: ``bin_s <= 0``; ``end_ns < t0_ns``; a request whose timestamps go
            backwards (a token before its start or before the previous token).
    """
    bin_ns = _bin_ns(bin_s)
    counts: dict[int, int] = {}
    sums: dict[int, int] = {}
    for t_start_ns, token_ns in requests:
        if token_ns and token_ns[0] < t_start_ns:
            raise ValueError("a token timestamp is before its request start")
        for prev, cur in itertools.pairwise(token_ns):
            gap = cur - prev
            if gap < 0:
                raise ValueError("token timestamps must not go backwards")
            if cur < t0_ns or (end_ns is not None and cur >= end_ns):
                continue
            k = (cur - t0_ns) // bin_ns
            counts[k] = counts.get(k, 0) + 1
            sums[k] = sums.get(k, 0) + gap
    n = _n_bins(max(counts, default=-1), t0_ns, bin_ns, end_ns)
    out: Series = []
    for k in range(n):
        total_ns = sums.get(k, 0)
        rate = counts[k] * _NS_PER_S / total_ns if total_ns > 0 else None
        out.append((_mid_s(k, bin_ns), rate))
    return out


def _reducer(reduce: str) -> Callable[[list[float]], float]:
    if reduce == "mean":
        return lambda xs: math.fsum(xs) / len(xs)
    if reduce == "max":
        return max
    if reduce == "min":
        return min
    raise ValueError(f"reduce must be 'mean', 'max' or 'min', got {reduce!r}")


def channel_series(
    t_ns: Sequence[int],
    values: Sequence[float | None],
    t0_ns: int,
    bin_s: float,
    reduce: Reduce = "mean",
    *,
    end_ns: int | None = None,
) -> Series:
    """Bin one sensor channel on the same axis as :func:`decode_rate_series`.

    Args:
        t_ns: sample times, ns, same clock as the token timestamps.
        values: one reading per sample in the channel's unit (C, MHz, W); ``None``, NaN
            or infinity mean "no reading" and are skipped.
        t0_ns, bin_s, end_ns: as in :func:`decode_rate_series`; samples before ``t0_ns``
            (or at/after ``end_ns``) are dropped.
        reduce: ``"mean"`` (frequency, power), ``"max"`` (temperature: the hottest
            moment) or ``"min"``, over the readings in a bin.

    Returns:
        ``[(t_s, value or None), ...]``, ``None`` for a bin without readings.

    Raises:
        ValueError: lengths differ, ``bin_s <= 0``, unknown ``reduce``, ``end_ns < t0_ns``.
    """
    if len(t_ns) != len(values):
        raise ValueError(f"t_ns and values differ in length ({len(t_ns)} != {len(values)})")
    bin_ns = _bin_ns(bin_s)
    fn = _reducer(reduce)
    bins: dict[int, list[float]] = {}
    for t, v in zip(t_ns, values, strict=True):
        if v is None or not math.isfinite(v):
            continue
        if t < t0_ns or (end_ns is not None and t >= end_ns):
            continue
        bins.setdefault((t - t0_ns) // bin_ns, []).append(float(v))
    n = _n_bins(max(bins, default=-1), t0_ns, bin_ns, end_ns)
    return [(_mid_s(k, bin_ns), fn(bins[k]) if k in bins else None) for k in range(n)]


def combine_series(
    series: Sequence[Series], reduce: Literal["mean", "max", "min", "sum"] = "max"
) -> Series:
    """Combine several binned channels into one, bin by bin, skipping ``None``.

    Args:
        series: channels binned with the same ``t0`` and ``bin_s`` (they may differ in
            length: the result is as long as the longest).
        reduce: ``"max"`` (temperatures: hottest sensor), ``"mean"``, ``"min"`` or
            ``"sum"`` (power rails that do not overlap).

    Returns:
        One series; a bin is ``None`` where no channel has a value. ``[]`` for no input.

    Raises:
        ValueError: unknown ``reduce``, or channels whose bin times disagree (binned with
            a different ``t0`` or ``bin_s``).
    """
    fn: Callable[[list[float]], float] = math.fsum if reduce == "sum" else _reducer(reduce)
    length = max((len(s) for s in series), default=0)
    out: Series = []
    for i in range(length):
        times = [s[i][0] for s in series if i < len(s)]
        t = times[0]
        if any(not math.isclose(x, t, rel_tol=1e-9, abs_tol=1e-9) for x in times):
            raise ValueError("series to combine must share bins (same t0 and bin_s)")
        vals = [s[i][1] for s in series if i < len(s) and s[i][1] is not None]
        out.append((t, fn(vals) if vals else None))  # type: ignore[arg-type]
    return out


def combine_max(series: Sequence[Series]) -> Series:
    """Bin-by-bin maximum over channels (``temp_max_c``: the hottest sensor); see
    :func:`combine_series`."""
    return combine_series(series, "max")


@dataclass(frozen=True)
class ThrottleVerdict:
    """Outcome of :func:`detect_throttling`. Units are in the names.

    Attributes:
        initial_tps: median decode tok/s of the initial phase; ``None`` if too short.
        steady_tps: median decode tok/s of the steady (final) phase; ``None`` if too short.
        drop_ratio: ``1 - steady_tps / initial_tps`` (negative if it got faster).
        throttled: ``True`` (sustained drop with a temperature rise or frequency drop),
            ``False`` (no sustained drop, or a drop the sensors show is not thermal),
            ``None`` (cannot tell: too short, or a drop with no sensor to attribute it).
        time_to_throttle_s: seconds from ``t0`` to the start of the first bin from which
            the rolling median stays below the threshold to the end; set when
            ``throttled`` is ``True`` or ``None`` because of missing sensors.
        reason: one line saying why, with the numbers.
        temp_rise_c: steady-phase median minus initial-phase median of the temperature
            series; ``None`` without temperature readings in both phases.
        freq_drop_ratio: ``1 - steady / initial`` median frequency; ``None`` likewise.
    """

    initial_tps: float | None
    steady_tps: float | None
    drop_ratio: float | None
    throttled: bool | None
    time_to_throttle_s: float | None
    reason: str
    temp_rise_c: float | None
    freq_drop_ratio: float | None

    def to_dict(self) -> dict[str, object]:
        """Plain-dict form (JSON-ready)."""
        return asdict(self)


def _pct(ratio: float) -> str:
    return f"{round(ratio * 100, 1):g}%"


def _num(x: float) -> str:
    return f"{round(x, 1):g}"


def _infer_bin_s(rate: Series) -> float:
    bin_s = rate[1][0] - rate[0][0]
    if bin_s <= 0:
        raise ValueError("rate series times must increase")
    for (a, _), (b, _) in itertools.pairwise(rate):
        if not math.isclose(b - a, bin_s, rel_tol=1e-6, abs_tol=1e-9):
            raise ValueError("rate series must be evenly spaced bins (use decode_rate_series)")
    return bin_s


def _phase_median(series: Series | None, lo: float, hi: float) -> float | None:
    """Median of the non-None values with ``lo <= t < hi``; ``None`` if there are none."""
    if not series:
        return None
    vals = [v for t, v in series if v is not None and lo <= t < hi]
    return statistics.median(vals) if vals else None


def detect_throttling(
    rate: Series,
    temp: Series | None,
    freq: Series | None,
    *,
    initial_s: float = 30.0,
    steady_fraction: float = 0.25,
    drop_threshold: float = 0.05,
    hold_s: float = 20.0,
    temp_rise_c: float = 5.0,
    freq_drop_threshold: float = 0.05,
) -> ThrottleVerdict:
    """Decide whether decode speed throttled during a sustained run, and by how much.

    Args:
        rate: decode tok/s per bin from :func:`decode_rate_series` (evenly spaced; ``None``
            bins are skipped). The run spans ``[t_first - bin/2, t_last + bin/2]``.
        temp: hottest temperature per bin, C (:func:`combine_max` of
            :func:`channel_series`), or ``None`` if no thermal sensor.
        freq: CPU/GPU frequency per bin, MHz, or ``None`` if no frequency sensor.
        initial_s: length of the initial phase, s (capped at a third of the run).
        steady_fraction: the steady phase is this final fraction of the run (0 < f <= 0.5).
        drop_threshold: a drop counts if the rolling median is below
            ``(1 - drop_threshold) * initial_tps`` (0 < x < 1).
        hold_s: rolling-median window and the least time the drop must last, s (> 0).
        temp_rise_c: least temperature rise, C, that corroborates throttling (>= 0).
        freq_drop_threshold: least relative frequency drop that corroborates it (0 < x < 1).

    Rules:
        - ``initial_tps`` = median of the bins in the first ``min(initial_s, run / 3)`` s;
          ``steady_tps`` = median of the bins in the last ``steady_fraction`` of the run.
          Fewer than :data:`MIN_PHASE_BINS` non-empty bins in either phase: ``throttled``
          is ``None``, "run too short to judge throttling", with the ``--duration`` that
          would do.
        - Rolling median: centred, over the odd number of bins closest to ``hold_s`` (at
          least 3), truncated at the ends. A centred median follows a step change to the
          bin, so the onset is exact to one bin, and ignores dips shorter than half the
          window.
        - Sustained drop: from some bin (the onset) to the end of the run, every rolling
          median is below ``(1 - drop_threshold) * initial_tps``, the drop lasts at least
          ``hold_s``, and ``steady_tps`` is below that threshold too. A drop that only
          begins in the steady phase too late to pull its median down is inconclusive
          (``None``, "run longer"); no drop at all is ``False``, whatever the sensors say.
        - Attribution, compared between the same two phases: temperature rise =
          steady-phase median - initial-phase median; frequency drop = 1 - steady/initial
          median. Sustained drop with a rise >= ``temp_rise_c`` or a frequency drop >=
          ``freq_drop_threshold``: ``True``. With neither sensor measured: ``None`` ("no
          temperature or frequency sensor to attribute it to throttling"). With a sensor
          measured but neither threshold reached: ``False`` ("not thermal throttling
          (background load?)"): a thermal cap acts through clock frequency and follows
          heat, so a slowdown with flat readings has another cause. Caveat: a sensor far
          from the hot spot (e.g. a battery zone) can miss it; the reason says what was
          seen.

    Constants (defaults) and why:
        - ``initial_s = 30``: a cool device sustains its boost clocks for tens of seconds
          before thermal limits act; MELT (arXiv:2403.12844) shows phones degrade under
          continuous LLM execution, and arXiv:2603.23640 within a couple of iterations,
          so the reference is kept short; capped at a third so it never dominates.
        - ``steady_fraction = 0.25``: the last quarter is where a throttled device has
          settled at its sustainable clock; long enough for a robust median.
        - ``drop_threshold = 0.05``: above the bin-to-bin noise of decode tok/s on a
          quiet device (about 1-3%, cf. SPEC's 3% agreement bar), below the 10-50% losses
          reported for throttled phones.
        - ``hold_s = 20``: thermal time constants of phone/board SoCs are seconds to
          minutes while background blips (GC, other apps, scheduler migration) last a few
          seconds; a drop that holds 20 s is a level, not a blip.
        - ``temp_rise_c = 5``: thermal zones often read in 1 C steps with +-1-2 C noise;
          5 C is a clear rise. ``freq_drop_threshold = 0.05``: about one DVFS operating
          point step down.

    Raises:
        ValueError: a parameter out of its range, or ``rate`` not evenly spaced.
    """
    if not (math.isfinite(initial_s) and initial_s > 0):
        raise ValueError(f"initial_s must be > 0 seconds, got {initial_s}")
    if not 0 < steady_fraction <= 0.5:
        raise ValueError(f"steady_fraction must be in (0, 0.5], got {steady_fraction}")
    if not 0 < drop_threshold < 1:
        raise ValueError(f"drop_threshold must be in (0, 1), got {drop_threshold}")
    if not (math.isfinite(hold_s) and hold_s > 0):
        raise ValueError(f"hold_s must be > 0 seconds, got {hold_s}")
    if not (math.isfinite(temp_rise_c) and temp_rise_c >= 0):
        raise ValueError(f"temp_rise_c must be >= 0, got {temp_rise_c}")
    if not 0 < freq_drop_threshold < 1:
        raise ValueError(f"freq_drop_threshold must be in (0, 1), got {freq_drop_threshold}")

    bin_s = _infer_bin_s(rate) if len(rate) >= 2 else None
    needed_s = _needed_duration_s(bin_s or 0.0, initial_s, steady_fraction)

    def short(reason: str) -> ThrottleVerdict:
        return ThrottleVerdict(None, None, None, None, None, reason, None, None)

    if bin_s is None:
        return short(
            f"run too short to judge throttling: {len(rate)} decode-rate bin(s); "
            f"use --duration >= {needed_s} s"
        )
    start = rate[0][0] - bin_s / 2
    end = rate[-1][0] + bin_s / 2
    duration = end - start
    init_end = start + min(initial_s, duration / 3)
    steady_start = end - steady_fraction * duration
    init_vals = [v for t, v in rate if v is not None and t < init_end]
    steady_vals = [v for t, v in rate if v is not None and t >= steady_start]
    if len(init_vals) < MIN_PHASE_BINS or len(steady_vals) < MIN_PHASE_BINS:
        advice = (
            f"use --duration >= {needed_s} s"
            if duration < needed_s
            else "too few bins with decode tokens: use a larger bin or shorter prompts"
        )
        return short(
            f"run too short to judge throttling: {len(init_vals)} decode-rate bins in the "
            f"first {_num(init_end - start)} s and {len(steady_vals)} in the last "
            f"{_num(end - steady_start)} s (need >= {MIN_PHASE_BINS} each); {advice}"
        )

    initial_tps = statistics.median(init_vals)
    steady_tps = statistics.median(steady_vals)
    drop_ratio = 1.0 - steady_tps / initial_tps
    temp_rise: float | None = None
    t_init, t_steady = (
        _phase_median(temp, start, init_end),
        _phase_median(temp, steady_start, math.inf),
    )
    if t_init is not None and t_steady is not None:
        temp_rise = t_steady - t_init
    freq_drop: float | None = None
    f_init, f_steady = (
        _phase_median(freq, start, init_end),
        _phase_median(freq, steady_start, math.inf),
    )
    if f_init is not None and f_steady is not None and f_init > 0:
        freq_drop = 1.0 - f_steady / f_init

    def verdict(throttled: bool | None, reason: str, tt: float | None = None) -> ThrottleVerdict:
        return ThrottleVerdict(
            initial_tps, steady_tps, drop_ratio, throttled, tt, reason, temp_rise, freq_drop
        )

    threshold = (1.0 - drop_threshold) * initial_tps
    onset = _sustained_onset(rate, bin_s, hold_s, threshold)
    rates = f"{_num(initial_tps)} -> {_num(steady_tps)} tok/s"
    if onset is None or end - onset < hold_s:
        if steady_tps < threshold:
            return verdict(
                False,
                f"no sustained drop: tok/s ({rates}) did not stay below "
                f"{_pct(1 - drop_threshold)} of the initial rate for {_num(hold_s)} s to the end",
            )
        change = round(-drop_ratio * 100, 1) + 0.0  # + 0.0 turns -0.0 into 0.0
        return verdict(
            False,
            f"no sustained drop: {rates} ({change:+g}% change, threshold -{_pct(drop_threshold)})",
        )
    if steady_tps >= threshold:
        return verdict(
            None,
            f"tok/s fell from {_num(onset)} s on, too late in the run to judge ({rates} "
            f"over the last {_num(end - steady_start)} s): run longer",
        )

    fell = f"tok/s fell {_pct(drop_ratio)} ({rates}) from {_num(onset)} s on"
    evidence = []
    if temp_rise is not None and temp_rise >= temp_rise_c:
        evidence.append(f"temperature +{_num(temp_rise)} C")
    if freq_drop is not None and freq_drop >= freq_drop_threshold:
        evidence.append(f"frequency -{_pct(freq_drop)}")
    if evidence:
        return verdict(True, f"{fell} with {' and '.join(evidence)}: thermal throttling", onset)
    if temp_rise is None and freq_drop is None:
        return verdict(
            None,
            f"{fell} but no temperature or frequency sensor to attribute it to throttling",
            onset,
        )
    seen = []
    if temp_rise is not None:
        seen.append(f"temperature {temp_rise:+.1f} C")
    if freq_drop is not None:
        seen.append(f"frequency {_pct(-freq_drop)}")
    return verdict(
        False,
        f"{fell} without a temperature or frequency change ({', '.join(seen)}): "
        "not thermal throttling (background load?)",
    )


def _needed_duration_s(bin_s: float, initial_s: float, steady_fraction: float) -> int:
    """Shortest whole-second duration that gives a full initial phase and enough bins."""
    return math.ceil(
        max(
            3 * initial_s,
            MIN_PHASE_BINS * bin_s / steady_fraction,
            3 * MIN_PHASE_BINS * bin_s,
        )
        - 1e-9
    )


def _sustained_onset(rate: Series, bin_s: float, hold_s: float, threshold: float) -> float | None:
    """Start time (s) of the first bin from which the centred rolling median stays below
    ``threshold`` to the end of the series; ``None`` if the last rolling median is not
    below it. Bins whose window holds no value are skipped (neither break nor start)."""
    half = max(1, round(hold_s / (2 * bin_s)))
    n = len(rate)
    onset: float | None = None
    for i in range(n - 1, -1, -1):
        window = [v for _, v in rate[max(0, i - half) : i + half + 1] if v is not None]
        if not window:
            continue
        if statistics.median(window) < threshold:
            onset = rate[i][0] - bin_s / 2
        else:
            break
    return onset


def _clean(series: Series) -> Series:
    return [(t, v if v is None or math.isfinite(v) else None) for t, v in series]


def summarize_sustain(
    requests: Sequence[tuple[int, Sequence[int]]],
    t0_ns: int,
    *,
    bin_s: float = 5.0,
    end_ns: int | None = None,
    temp: Sequence[Channel] | None = None,
    freq: Sequence[Channel] | None = None,
    power: Channel | None = None,
    **detect: float,
) -> dict[str, object]:
    """Bin a sustained run and judge throttling; a JSON-ready dict for the results store.

    Args:
        requests: ``(t_start_ns, token_ns)`` per request (see :func:`decode_rate_series`).
        t0_ns: start of the sustained run, ns.
        bin_s: bin width, s (default 5: at 60 tok/s about 300 gaps per bin; 120 bins in
            a 10-minute run).
        end_ns: end of the run, ns; default: the last token or sensor sample.
        temp: thermal channels ``(t_ns, values in C)``; per bin the max of each, then the
            max over channels (``temp_max_c``). ``None`` or empty: not measured.
        freq: frequency channels ``(t_ns, values in MHz)``; per bin the mean of each, then
            the max over channels (the fastest core/cluster shows a frequency cap; idle
            cores would dilute a mean). ``None`` or empty: not measured.
        power: one total power channel ``(t_ns, values in W)``, per-bin mean; pass one
            non-overlapping total (RAPL package, a board's input rail, battery V*I).
        **detect: keyword overrides for :func:`detect_throttling` (``initial_s``, ...).

    Returns:
        ``{"bin_s", "series": {"t_s", "decode_tps", "temp_max_c", "cpu_freq_mhz",
        "power_w"}, "verdict": {...ThrottleVerdict fields...}, "temp_max_c",
        "throttled"}``. Series are lists of equal length (``None`` for empty bins) or
        ``None`` when the sensor was not measured; ``temp_max_c`` (scalar) is the hottest
        reading in the run or ``None``; ``throttled`` repeats the verdict. No NaN.

    Raises:
        ValueError: as :func:`decode_rate_series`, :func:`channel_series` and
            :func:`detect_throttling`.
    """
    bin_ns = _bin_ns(bin_s)
    if end_ns is None:
        last = [tok[-1] for _, tok in requests if tok]
        for chans in (temp or (), freq or (), [power] if power else ()):
            last.extend(max(t) for t, _ in chans if len(t))
        end_ns = max(max(last, default=t0_ns) + 1, t0_ns)
    rate = decode_rate_series(requests, t0_ns, bin_s, end_ns=end_ns)

    def binned(chans: Sequence[Channel] | None, reduce: Reduce, across: str) -> Series | None:
        if not chans:
            return None
        per = [channel_series(t, v, t0_ns, bin_s, reduce, end_ns=end_ns) for t, v in chans]
        out = combine_series(per, across)  # type: ignore[arg-type]
        return out if any(v is not None for _, v in out) else None

    temp_s = binned(temp, "max", "max")
    freq_s = binned(freq, "mean", "max")
    power_s = binned([power] if power else None, "mean", "max")
    verdict = detect_throttling(rate, temp_s, freq_s, **detect)

    def values(series: Series | None) -> list[float | None] | None:
        return None if series is None else [v for _, v in _clean(series)]

    temp_vals = values(temp_s)
    hottest = [v for v in temp_vals or [] if v is not None]
    return {
        "bin_s": bin_ns / _NS_PER_S,
        "series": {
            "t_s": [t for t, _ in rate],
            "decode_tps": values(rate),
            "temp_max_c": temp_vals,
            "cpu_freq_mhz": values(freq_s),
            "power_w": values(power_s),
        },
        "verdict": verdict.to_dict(),
        "temp_max_c": max(hottest) if hottest else None,
        "throttled": verdict.throttled,
    }

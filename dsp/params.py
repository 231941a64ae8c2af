"""Pipeline parameters, one dataclass per configuration section.

Each field is a configuration key declared once (:func:`dsp.settings.setting`:
default, range, doc); ``service.config`` validates the merged TOML from that
and ``config/default.toml`` is generated from it. Angles in degrees, times in
seconds, unless the name says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .settings import setting

#: docs/formats.md: a gap is a step in t over 2.5 sample periods; after a gap over
#: 2 s drift confirmation starts again; rates from 50 to 1000 Hz.
GAP_PERIODS = 2.5
LONG_GAP_S = 2.0
RATE_MIN_HZ = 50.0
RATE_MAX_HZ = 1000.0
GRAVITY = 9.81


@dataclass(frozen=True)
class CalibrationParams:
    """The routine: stand still, hip hinge, stand still; its thresholds."""

    still_window_s: float = setting(1.0, 0.2, 5.0, "s, window over which stillness is judged (spread of the readings)")
    still_gyro_std_dps: float = setting(
        3.0, 0.1, 30.0, "deg/s, per-axis gyro spread still counted as standing (people sway)"
    )
    still_acc_std_m_s2: float = setting(
        0.35, 0.01, 3.0, "m/s², per-axis accelerometer spread still counted as standing"
    )
    still_before_s: float = setting(3.0, 1.0, 60.0, "s, standing still before the hinge (the neutral)")
    still_after_s: float = setting(2.0, 1.0, 60.0, "s, standing still after the hinge")
    still_use_max_s: float = setting(10.0, 1.0, 60.0, "s, at most this much of the first stillness is averaged")
    hinge_max_s: float = setting(6.0, 1.0, 30.0, "s, the hinge (down and back up) must fit in this time")
    hinge_min_deg: float = setting(15.0, 5.0, 80.0, "deg, least pelvis rotation accepted as a hip hinge")
    hinge_max_deg: float = setting(90.0, 10.0, 120.0, "deg, most pelvis rotation accepted")
    hinge_ignore_below_deg: float = setting(
        5.0, 0.5, 20.0, "deg, smaller movements between stillnesses are not attempts at all"
    )
    hinge_single_axis_min: float = setting(0.8, 0.3, 1.0, "0..1, share of the hinge's rotation about its main axis")
    hinge_axis_min_from_vertical_deg: float = setting(
        55.0, 0.0, 90.0, "deg, the hinge axis must be this far from vertical (not a twist)"
    )
    hinge_return_max_deg: float = setting(
        8.0, 1.0, 45.0, "deg, standing after the hinge must be within this of the neutral"
    )
    search_s: float = setting(
        120.0, 0.0, 3600.0, "s, a recording must start with the routine within this time (0 = no limit)"
    )


@dataclass(frozen=True)
class OrientationParams:
    vqf_tau_acc_s: float = setting(3.0, 0.1, 60.0, "s, VQF accelerometer time constant (continuous orientation)")
    vqf_motion_bias_est: bool = setting(True, doc="VQF gyro bias estimation during motion")


@dataclass(frozen=True)
class GaitParams:
    step_filter_hz: float = setting(6.0, 1.0, 20.0, "Hz, low-pass of the acceleration norm used to find steps")
    step_filter_taps_s: float = setting(0.3, 0.05, 2.0, "s, length of that (linear-phase FIR) filter")
    min_cadence_spm: float = setting(120.0, 60.0, 300.0, "steps/min, slower steps are not running")
    max_cadence_spm: float = setting(240.0, 60.0, 360.0, "steps/min, faster steps are not running")
    run_min_amplitude_g: float = setting(
        0.8, 0.05, 5.0, "g, least step-to-step swing of the filtered acceleration norm for running"
    )
    boundary_max_g: float = setting(0.9, 0.1, 1.5, "g, a step boundary (mid-flight) must dip below this")
    contact_threshold_g: float = setting(
        0.5, 0.05, 3.0, "g, acceleration norm above which the foot counts as on the ground"
    )
    side_min_obliquity_deg: float = setting(
        0.5, 0.0, 20.0, "deg, least left/right obliquity difference to tell the stance side"
    )
    gravity_strides: int = setting(
        16, 1, 40, "strides (this and the ones before it) whose mean specific forces in the gyro frame give gravity"
    )


@dataclass(frozen=True)
class SteadyParams:
    after_start_s: float = setting(
        5.0, 0.0, 120.0, "s, strides this soon after running starts are unsteady (speeding up)"
    )
    before_stop_s: float = setting(
        1.0, 0.0, 30.0, "s, strides this soon before running stops are unsteady (and the wait before a stride is final)"
    )
    cadence_change_pct: float = setting(
        6.0, 0.5, 100.0, "%, a stride whose cadence differs this much from the recent median is unsteady"
    )
    max_accel_m_s2: float = setting(
        0.25,
        0.1,
        10.0,
        "m/s², a stride whose mean horizontal acceleration (the pelvis's, off the pooled gravity) is above this "
        "is unsteady (speeding up, slowing down)",
    )
    cadence_history_strides: int = setting(10, 1, 100, "strides in that recent median")


@dataclass(frozen=True)
class AlertParams:
    confirm_strides: int = setting(3, 1, 100, "consecutive steady strides past a threshold that confirm a drift")
    clear_strides: int = setting(
        3, 1, 100, "consecutive steady strides back inside (threshold - hysteresis) that clear it"
    )
    hysteresis_deg: float = setting(
        1.5, 0.0, 20.0, "deg, how far back inside the threshold a stride must be to count for clearing"
    )
    quiet_s: float = setting(
        30.0, 0.0, 3600.0, "s, a drift of the same kind confirmed again within this of its last alert is not cued again"
    )
    remind_every_s: float = setting(120.0, 0.0, 3600.0, "s, a drift that lasts is cued again this often (0 = never)")
    anterior_tilt_deg: float = setting(
        6.0, 0.5, 45.0, "deg, stride-mean pelvic tilt above +this: pelvis tipping forward"
    )
    posterior_tilt_deg: float = setting(6.0, 0.5, 45.0, "deg, stride-mean pelvic tilt below -this: pelvis tucked under")
    pelvic_drop_deg: float = setting(9.0, 0.5, 45.0, "deg, peak contralateral pelvic drop in a stance above this")
    trunk_lean_deg: float = setting(15.0, 0.5, 60.0, "deg, stride-mean forward trunk lean above this (trunk sensor)")
    ribs_behind_pelvis_deg: float = setting(
        8.0, 0.5, 60.0, "deg, stack angle below -this: ribs behind the pelvis, back arched (trunk sensor)"
    )
    ribs_ahead_of_pelvis_deg: float = setting(
        10.0, 0.5, 60.0, "deg, stack angle above this: ribs ahead of the pelvis, hunched (trunk sensor)"
    )
    #: the kinds are checked against ``dsp.alert_kinds.ALERT_KINDS``
    enabled: tuple[str, ...] = setting(
        (
            "anterior_tilt",
            "posterior_tilt",
            "pelvic_drop",
            "trunk_lean",
            "ribs_behind_pelvis",
            "ribs_ahead_of_pelvis",
        ),
        doc="the drifts watched for; a kind left out is never alerted",
    )


#: where a metric's reference comes from (docs/calibration.md, "The reference of each metric")
REFERENCE_SOURCES = ("neutral", "first_minutes", "targets")
#: the metrics measured from a reference, as the stride fields name them
REFERENCE_FIELDS = ("pelvic_tilt_deg", "trunk_lean_deg", "stack_deg")


@dataclass(frozen=True)
class ReferenceParams:
    mode: str = setting("per_metric", choices=("per_metric", *REFERENCE_SOURCES))
    pelvic_tilt: str = setting(
        "first_minutes",
        doc='reference of the pelvic tilt when mode = "per_metric": runners tilt a few degrees more running than '
        "standing, so the run's own baseline",
        choices=REFERENCE_SOURCES,
    )
    trunk_lean: str = setting(
        "neutral", doc='reference of the trunk lean when mode = "per_metric"', choices=REFERENCE_SOURCES
    )
    stack: str = setting(
        "neutral",
        doc='reference of the stack angle when mode = "per_metric": ribs over the pelvis as when standing stacked',
        choices=REFERENCE_SOURCES,
    )
    first_minutes: float = setting(
        3.0, 0.5, 60.0, 'min, steady running time whose median makes a "first_minutes" reference'
    )
    pelvic_tilt_deg: float = setting(0.0, -45.0, 45.0, 'deg, target tilt where its reference is "targets"')
    trunk_lean_deg: float = setting(0.0, -45.0, 60.0, 'deg, target trunk lean where its reference is "targets"')
    stack_deg: float = setting(0.0, -60.0, 60.0, 'deg, target stack angle where its reference is "targets"')

    def source(self, field: str) -> str:
        """Where the reference of ``field`` (a stride field of ``REFERENCE_FIELDS``) comes from."""
        if self.mode != "per_metric":
            return self.mode
        return str(getattr(self, field.removesuffix("_deg")))


@dataclass(frozen=True)
class CalibrationCheckParams:
    forward_axis_max_deg: float = setting(
        30.0,
        5.0,
        90.0,
        "deg, median disagreement between the body's forward axis and the running accelerations "
        "that flags a suspect calibration",
    )
    strides: int = setting(20, 3, 500, "steady strides in that median")
    up_max_deg: float = setting(
        30.0,
        10.0,
        90.0,
        "deg, median angle of the stride-mean up from the body's z (pelvis, and trunk; from the standing "
        "neutral) that flags a calibration that does not fit the mounting",
    )


@dataclass(frozen=True)
class CueParams:
    """Which alerts are cued (``dsp.cue_policy``; docs/cues.md): the ``[cue]`` keys the pipeline reads.

    Every alert is raised, delivered and stored; these only decide its ``cue`` mark, in the pipeline, so
    ``analyze`` and the live run agree.
    """

    fading: bool = setting(
        True, doc="faded feedback: fewer cues over the sessions as the time in alert improves (docs/cues.md)"
    )
    max_per_10min: int = setting(
        6, 0, 60, "cues at most in any 10 minutes; the alerts beyond are raised but not cued (0 = no ceiling)"
    )
    wide_band_deg: float = setting(
        3.0, 0.0, 30.0, "deg, fading stage 3 cues only an alert this far beyond its threshold"
    )
    fade_below_pct: float = setting(
        10.0, 0.0, 100.0, "%, a session in alert under this share of its running time counts towards fading"
    )
    fade_after_sessions: int = setting(2, 1, 20, "such sessions in a row that fade the feedback by one stage")
    regress_by_pct: float = setting(
        10.0, 0.0, 100.0, "%, a session in alert at least fade_below_pct + this brings back one stage"
    )
    min_running_min: float = setting(
        10.0, 0.0, 600.0, "min, a session with less running neither fades nor brings back a stage"
    )
    improving_strides: int = setting(
        8, 3, 50, "steady strides whose trend decides that a drift is already shrinking (no reminder cued)"
    )
    improving_min_deg: float = setting(
        1.5, 0.0, 20.0, "deg, how far the fitted trend over those strides must fall towards the reference"
    )


@dataclass(frozen=True)
class PipelineParams:
    calibration: CalibrationParams = field(default_factory=CalibrationParams)
    orientation: OrientationParams = field(default_factory=OrientationParams)
    gait: GaitParams = field(default_factory=GaitParams)
    steady: SteadyParams = field(default_factory=SteadyParams)
    alerts: AlertParams = field(default_factory=AlertParams)
    reference: ReferenceParams = field(default_factory=ReferenceParams)
    calibration_check: CalibrationCheckParams = field(default_factory=CalibrationCheckParams)
    cue: CueParams = field(default_factory=CueParams)

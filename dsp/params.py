"""Pipeline parameters, one dataclass per configuration section.

Field names equal the keys of ``config/default.toml``; ``service.config``
builds these from the merged TOML, so a misspelt key is an error there.
Angles in degrees, times in seconds, unless the name says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: DESIGN.md: a gap is a step in t over 2.5 sample periods; after a gap over
#: 2 s drift confirmation starts again; rates from 50 to 1000 Hz.
GAP_PERIODS = 2.5
LONG_GAP_S = 2.0
RATE_MIN_HZ = 50.0
RATE_MAX_HZ = 1000.0
GRAVITY = 9.81


@dataclass(frozen=True)
class CalibrationParams:
    still_window_s: float = 1.0
    still_gyro_std_dps: float = 3.0
    still_acc_std_m_s2: float = 0.35
    still_before_s: float = 3.0
    still_after_s: float = 2.0
    still_use_max_s: float = 10.0
    hinge_max_s: float = 6.0
    hinge_min_deg: float = 15.0
    hinge_max_deg: float = 90.0
    hinge_ignore_below_deg: float = 5.0
    hinge_single_axis_min: float = 0.8
    hinge_axis_min_from_vertical_deg: float = 55.0
    hinge_return_max_deg: float = 8.0
    search_s: float = 120.0


@dataclass(frozen=True)
class OrientationParams:
    vqf_tau_acc_s: float = 3.0
    vqf_motion_bias_est: bool = True


@dataclass(frozen=True)
class GaitParams:
    step_filter_hz: float = 6.0
    step_filter_taps_s: float = 0.3
    min_cadence_spm: float = 120.0
    max_cadence_spm: float = 240.0
    run_min_amplitude_g: float = 0.8
    boundary_max_g: float = 0.9
    contact_threshold_g: float = 0.5
    side_min_obliquity_deg: float = 0.5


@dataclass(frozen=True)
class SteadyParams:
    after_start_s: float = 5.0
    before_stop_s: float = 2.0
    cadence_change_pct: float = 6.0
    cadence_history_strides: int = 10


@dataclass(frozen=True)
class AlertParams:
    confirm_strides: int = 3
    clear_strides: int = 3
    hysteresis_deg: float = 1.5
    quiet_s: float = 30.0
    remind_every_s: float = 120.0
    anterior_tilt_deg: float = 6.0
    posterior_tilt_deg: float = 6.0
    pelvic_drop_deg: float = 9.0
    trunk_lean_deg: float = 15.0
    ribs_behind_pelvis_deg: float = 8.0
    ribs_ahead_of_pelvis_deg: float = 10.0
    enabled: tuple[str, ...] = (
        "anterior_tilt",
        "posterior_tilt",
        "pelvic_drop",
        "trunk_lean",
        "ribs_behind_pelvis",
        "ribs_ahead_of_pelvis",
    )


@dataclass(frozen=True)
class ReferenceParams:
    mode: str = "neutral"  # "neutral" | "first_minutes" | "targets"
    first_minutes: float = 3.0
    pelvic_tilt_deg: float = 0.0
    trunk_lean_deg: float = 0.0
    stack_deg: float = 0.0


@dataclass(frozen=True)
class CalibrationCheckParams:
    forward_axis_max_deg: float = 30.0
    strides: int = 20


@dataclass(frozen=True)
class PipelineParams:
    calibration: CalibrationParams = field(default_factory=CalibrationParams)
    orientation: OrientationParams = field(default_factory=OrientationParams)
    gait: GaitParams = field(default_factory=GaitParams)
    steady: SteadyParams = field(default_factory=SteadyParams)
    alerts: AlertParams = field(default_factory=AlertParams)
    reference: ReferenceParams = field(default_factory=ReferenceParams)
    calibration_check: CalibrationCheckParams = field(default_factory=CalibrationCheckParams)

"""Every phrase the runner hears, per language: the alerts, calibration guidance, sensor lost/back, command
confirmations. Pure data (no I/O), so the daemon (which puts the words in its guide and sensor events), the cue
client (which says the alerts) and the phone page all speak from one table.

Short on purpose: a runner hears them mid-stride. English is the reference: every language has every key of
``PHRASES["en"]`` (tests/test_cue_languages.py). ``{reason}`` and ``{n}`` are filled in by ``phrase``.
"""

from __future__ import annotations

from .alert_kinds import ALERT_KINDS, GENERIC_PHRASE

#: language -> the espeak-ng voice used when ``[cue] voice`` is empty
VOICES: dict[str, str] = {"en": "en", "de": "de", "es": "es", "fr": "fr-fr"}

#: the calibration refusals worth saying, by the start of the reason ``dsp.calibration`` gives
REASONS: dict[str, str] = {
    "hinge too small": "reason.hinge_too_small",
    "hinge too large": "reason.hinge_too_large",
    "hinge not about one axis": "reason.hinge_not_one_axis",
    "that was a twist, not a hinge": "reason.twist",
    "did not come back upright after the hinge": "reason.not_upright",
}

_EN: dict[str, str] = {
    **{f"alert.{k.name}": k.phrase for k in ALERT_KINDS.values()},
    "alert.generic": GENERIC_PHRASE,
    "sensor_lost": "Sensor lost.",
    "sensor_back": "Sensor back.",
    "calibrate_start": (
        "Stand tall and still for three seconds. Then bow forward from the hips and come back up. "
        "Then stand still for two seconds."
    ),
    "calibrated": "Calibrated. Off you go.",
    "calibration_refused": "Calibration not accepted: {reason}. Stand still and try again.",
    "calibration_refused_plain": "Calibration not accepted. Stand still and try again.",
    "reason.hinge_too_small": "hinge too small",
    "reason.hinge_too_large": "hinge too large",
    "reason.hinge_not_one_axis": "hinge not about one axis",
    "reason.twist": "that was a twist, not a hinge",
    "reason.not_upright": "did not come back upright after the hinge",
    "control.start": "Starting. Stand tall and still.",
    "control.pause": "Paused.",
    "control.resume": "Resumed.",
    "control.stop": "Stopped. Run saved.",
    "control.recalibrate": "Recalibrating. Stand tall and still.",
    "control.unmute": "Cues back on.",
    "control.mute_one": "Cues muted for 1 minute.",
    "control.mute_n": "Cues muted for {n} minutes.",
}

_DE: dict[str, str] = {
    "alert.anterior_tilt": "Rippen über die Hüfte. Becken aufrichten.",
    "alert.posterior_tilt": "Becken neutral lassen.",
    "alert.pelvic_drop": "Hüfte gerade halten.",
    "alert.trunk_lean": "Lauf aufrecht.",
    "alert.ribs_behind_pelvis": "Rippen übers Becken.",
    "alert.ribs_ahead_of_pelvis": "Brust heben. Aufrichten.",
    "alert.generic": "Achte auf deine Haltung.",
    "sensor_lost": "Sensor verloren.",
    "sensor_back": "Sensor wieder da.",
    "calibrate_start": (
        "Drei Sekunden aufrecht und still stehen. Dann aus der Hüfte nach vorn beugen und wieder aufrichten. "
        "Dann zwei Sekunden still stehen."
    ),
    "calibrated": "Kalibriert. Los geht's.",
    "calibration_refused": "Kalibrierung nicht angenommen: {reason}. Still stehen und noch einmal.",
    "calibration_refused_plain": "Kalibrierung nicht angenommen. Still stehen und noch einmal.",
    "reason.hinge_too_small": "Beugung zu klein",
    "reason.hinge_too_large": "Beugung zu groß",
    "reason.hinge_not_one_axis": "nicht gerade nach vorn gebeugt",
    "reason.twist": "das war eine Drehung, keine Beugung",
    "reason.not_upright": "nach der Beugung nicht wieder aufrecht",
    "control.start": "Es geht los. Aufrecht und still stehen.",
    "control.pause": "Pause.",
    "control.resume": "Weiter geht's.",
    "control.stop": "Gestoppt. Lauf gespeichert.",
    "control.recalibrate": "Neu kalibrieren. Aufrecht und still stehen.",
    "control.unmute": "Hinweise wieder an.",
    "control.mute_one": "Hinweise eine Minute stumm.",
    "control.mute_n": "Hinweise {n} Minuten stumm.",
}

_ES: dict[str, str] = {
    "alert.anterior_tilt": "Costillas sobre la cadera. Mete la pelvis.",
    "alert.posterior_tilt": "Deja la pelvis neutra.",
    "alert.pelvic_drop": "Nivela la cadera.",
    "alert.trunk_lean": "Cuerpo erguido.",
    "alert.ribs_behind_pelvis": "Costillas sobre la pelvis.",
    "alert.ribs_ahead_of_pelvis": "Pecho arriba. Alinéate.",
    "alert.generic": "Revisa tu postura.",
    "sensor_lost": "Sensor perdido.",
    "sensor_back": "Sensor recuperado.",
    "calibrate_start": (
        "De pie y sin moverte tres segundos. Luego inclínate desde la cadera y vuelve arriba. "
        "Luego dos segundos sin moverte."
    ),
    "calibrated": "Calibrado. ¡Adelante!",
    "calibration_refused": "Calibración no aceptada: {reason}. Quédate quieto y repite.",
    "calibration_refused_plain": "Calibración no aceptada. Quédate quieto y repite.",
    "reason.hinge_too_small": "inclinación demasiado pequeña",
    "reason.hinge_too_large": "inclinación demasiado grande",
    "reason.hinge_not_one_axis": "inclinación torcida",
    "reason.twist": "fue un giro, no una inclinación",
    "reason.not_upright": "no volviste a ponerte recto",
    "control.start": "Empezamos. De pie y sin moverte.",
    "control.pause": "En pausa.",
    "control.resume": "Seguimos.",
    "control.stop": "Parado. Carrera guardada.",
    "control.recalibrate": "Recalibrando. De pie y sin moverte.",
    "control.unmute": "Avisos activados.",
    "control.mute_one": "Avisos en silencio un minuto.",
    "control.mute_n": "Avisos en silencio {n} minutos.",
}

_FR: dict[str, str] = {
    "alert.anterior_tilt": "Côtes au-dessus des hanches. Rentre le bassin.",
    "alert.posterior_tilt": "Laisse le bassin neutre.",
    "alert.pelvic_drop": "Hanches à niveau.",
    "alert.trunk_lean": "Grandis-toi.",
    "alert.ribs_behind_pelvis": "Côtes au-dessus du bassin.",
    "alert.ribs_ahead_of_pelvis": "Ouvre la poitrine. Redresse-toi.",
    "alert.generic": "Vérifie ta posture.",
    "sensor_lost": "Capteur perdu.",
    "sensor_back": "Capteur retrouvé.",
    "calibrate_start": (
        "Tiens-toi droit et immobile trois secondes. Puis penche-toi en avant depuis les hanches et remonte. "
        "Puis reste immobile deux secondes."
    ),
    "calibrated": "Calibré. C'est parti.",
    "calibration_refused": "Calibrage refusé : {reason}. Reste immobile et recommence.",
    "calibration_refused_plain": "Calibrage refusé. Reste immobile et recommence.",
    "reason.hinge_too_small": "flexion trop faible",
    "reason.hinge_too_large": "flexion trop forte",
    "reason.hinge_not_one_axis": "flexion de travers",
    "reason.twist": "c'était une rotation, pas une flexion",
    "reason.not_upright": "pas revenu droit après la flexion",
    "control.start": "On y va. Tiens-toi droit et immobile.",
    "control.pause": "Pause.",
    "control.resume": "On reprend.",
    "control.stop": "Arrêté. Course enregistrée.",
    "control.recalibrate": "Nouveau calibrage. Tiens-toi droit et immobile.",
    "control.unmute": "Conseils réactivés.",
    "control.mute_one": "Conseils coupés une minute.",
    "control.mute_n": "Conseils coupés {n} minutes.",
}

#: language -> phrase key -> what is said
PHRASES: dict[str, dict[str, str]] = {"en": _EN, "de": _DE, "es": _ES, "fr": _FR}

#: the languages ``[cue] language`` may name
LANGUAGES: tuple[str, ...] = tuple(PHRASES)


def phrase(language: str, key: str, **fields: str) -> str:
    """What is said for ``key`` in ``language`` (English when either is unknown: a newer peer's kind or key)."""
    table = PHRASES.get(language, _EN)
    text = table.get(key) or _EN.get(key) or _EN["alert.generic"]
    return text.format(**fields) if fields else text


def alert_phrase(language: str, kind: str) -> str:
    """An alert kind's phrase; the generic one for a kind this version does not know."""
    key = f"alert.{kind}"
    return phrase(language, key if key in _EN else "alert.generic")


def number(language: str, value: float) -> str:
    """A number as the language writes it for its voice (2.5 in English, 2,5 in German, Spanish, French)."""
    text = f"{value:g}"
    return text if language == "en" else text.replace(".", ",")


def mute_phrase(language: str, minutes: float) -> str:
    """The confirmation of a mute command (0 minutes: cues back on)."""
    if not minutes:
        return phrase(language, "control.unmute")
    if minutes == 1:
        return phrase(language, "control.mute_one")
    return phrase(language, "control.mute_n", n=number(language, minutes))


def refusal_phrase(language: str, reason: str) -> str:
    """A calibration refusal said aloud: its short reason when one is known in ``language``, else plainly."""
    short = reason.split(":")[0].split("(")[0].strip()
    key = REASONS.get(short)
    if key is not None:
        return phrase(language, "calibration_refused", reason=phrase(language, key))
    if language == "en" and short:  # English can say any reason the calibration gives, as before
        return phrase(language, "calibration_refused", reason=short)
    return phrase(language, "calibration_refused_plain")

"""The preferences section's words, merged into the portal's `TEXT` (web/i18n.py)."""

from __future__ import annotations

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "prefs_title": "How and when we contact you",
        "prefs_intro": "Choose the channels you prefer, in order, and times we should avoid. We always stay "
        "within the hours the law allows.",
        "prefs_channel_n": "Choice {n}",
        "prefs_any": "No preference",
        "prefs_not_before": "Not before",
        "prefs_not_after": "Not after",
        "prefs_no_limit": "No limit",
        "prefs_days": "Days to avoid",
        "prefs_zone": "Times are your local time ({zone}).",
        "prefs_zone_unknown": "Times are your local time.",
        "prefs_button": "Save my preferences",
        "prefs_saved": "Saved on {date}.",
        "done_preferences": "Thank you. Your contact preferences are saved.",
        "prefs_bad_channels": "Please choose each channel only once.",
        "prefs_bad_time": "Please choose one of the times offered.",
        "prefs_bad_window": "Please leave at least one hour between “not before” and “not after”.",
        "prefs_bad_days": "Please leave at least two days a week when we may contact you.",
        "prefs_outside_legal": "We may only contact you between {start} and {end} your local time: please "
        "choose “not before” earlier than {end} and “not after” later than {start}, with time in between.",
        "prefs_outside_legal_days": "The days you chose leave no day when we may contact you (we may only "
        "contact you between {start} and {end} your local time, on the days the law allows): please avoid "
        "fewer days.",
        "day_1": "Monday",
        "day_2": "Tuesday",
        "day_3": "Wednesday",
        "day_4": "Thursday",
        "day_5": "Friday",
        "day_6": "Saturday",
        "day_7": "Sunday",
    },
    "es": {
        "prefs_title": "Cómo y cuándo le contactamos",
        "prefs_intro": "Elija los canales que prefiere, en orden, y los horarios que debemos evitar. Siempre "
        "respetamos el horario que permite la ley.",
        "prefs_channel_n": "Opción {n}",
        "prefs_any": "Sin preferencia",
        "prefs_not_before": "No antes de",
        "prefs_not_after": "No después de",
        "prefs_no_limit": "Sin límite",
        "prefs_days": "Días que prefiere evitar",
        "prefs_zone": "Las horas son de su hora local ({zone}).",
        "prefs_zone_unknown": "Las horas son de su hora local.",
        "prefs_button": "Guardar mis preferencias",
        "prefs_saved": "Guardado el {date}.",
        "done_preferences": "Gracias. Sus preferencias de contacto quedan guardadas.",
        "prefs_bad_channels": "Elija cada canal una sola vez.",
        "prefs_bad_time": "Elija una de las horas ofrecidas.",
        "prefs_bad_window": "Deje al menos una hora entre «no antes de» y «no después de».",
        "prefs_bad_days": "Deje al menos dos días a la semana en que podamos contactarle.",
        "prefs_outside_legal": "Solo podemos contactarle entre las {start} y las {end}, hora local: elija "
        "«no antes de» antes de las {end} y «no después de» después de las {start}, con tiempo entre ambos.",
        "prefs_outside_legal_days": "Los días elegidos no dejan ningún día en que podamos contactarle (solo "
        "entre las {start} y las {end}, hora local, los días que permite la ley): evite menos días.",
        "day_1": "Lunes",
        "day_2": "Martes",
        "day_3": "Miércoles",
        "day_4": "Jueves",
        "day_5": "Viernes",
        "day_6": "Sábado",
        "day_7": "Domingo",
    },
}

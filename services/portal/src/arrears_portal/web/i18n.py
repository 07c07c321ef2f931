"""The portal's words in each language it speaks (English and Spanish today). A page picks the visitor's
language from `?lang=`, then the browser's Accept-Language, then English."""

from __future__ import annotations

from ..preferences.text import TEXT as PREFERENCES_TEXT

LANGUAGES = ("en", "es")

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "title": "Your account",
        "verify_title": "Confirm it is you",
        "verify_intro": "To protect your privacy, enter the last 4 digits of the phone number we have on file "
        "for you. We show nothing about the account until then.",
        "verify_label": "Last 4 digits of your phone number",
        "verify_button": "Continue",
        "verify_wrong": "That does not match our records. Please try again.",
        "verify_locked": "Too many attempts. For your security this link is locked for a while; "
        "please try again later or contact us.",
        "verify_unavailable": "We cannot show this account online. Please contact us.",
        "link_invalid": "This link is not valid. Please use the link in the latest message we sent you, "
        "or contact us.",
        "link_expired": "This link has expired. Please use the link in the latest message we sent you, "
        "or contact us.",
        "session_over": "Your visit has ended. Please open the link in your message again.",
        "greeting": "Hello {name}",
        "owed": "Amount owed",
        "due": "Due since",
        "settled": "Nothing is owed on this account. Thank you.",
        "promise_title": "Promise to pay",
        "promise_intro": "Tell us the day you will pay; we will not send reminders until then.",
        "promise_date": "Date",
        "promise_amount": "Amount (optional)",
        "promise_button": "Promise to pay",
        "dispute_title": "Dispute this debt",
        "dispute_intro": "If you think this is wrong, tell us why. Reminders stop while we look into it.",
        "dispute_note": "What is wrong?",
        "dispute_button": "Open a dispute",
        "optout_title": "Stop messages",
        "optout_intro": "Choose a channel we should no longer use to contact you.",
        "optout_button": "Stop",
        "channel_sms": "Text messages (SMS)",
        "channel_email": "Email",
        "channel_whatsapp": "WhatsApp",
        "done_promise": "Thank you. Your promise to pay is recorded.",
        "done_dispute": "Thank you. Your dispute is recorded; we will contact you.",
        "done_opt_out": "Done. We will not contact you on that channel again.",
        "bad_date": "Please choose a date between today and {last}.",
        "bad_amount": "Please enter an amount like 25.00.",
        "bad_note": "Please tell us in a few words (up to 1000 characters).",
        "sign_out": "Sign out",
        "contact": "Questions? Contact {brand}",
        "too_many": "Too many requests. Please wait a minute and try again.",
        "other_language": "Español",
        "pay_title": "Pay now",
        "pay_intro": "Pay by card on our payment provider's secure page. Reminders stop once it is paid.",
        "pay_full": "Pay in full: {amount}",
        "pay_part_label": "Or pay part: amount",
        "pay_part_hint": "At least {least}.",
        "pay_part": "Pay this amount",
        "pay_description": "Payment to {brand}",
        "pay_too_much": "That is more than you owe ({most}). Please enter a smaller amount.",
        "pay_too_little": "The smallest payment we can take is {least}.",
        "pay_unavailable": "Paying online is not available right now. Please try again later or contact us.",
        "done_pay_cancelled": "The payment was cancelled; nothing was charged.",
        "paid_title": "Thank you",
        "paid_done": "We received your payment of {amount}. Your balance is updated within a minute.",
        "paid_pending": "Your payment of {amount} is being processed. Your balance is updated when it is "
        "confirmed.",
        "paid_no_visit": "Thank you. If your payment went through, your balance is updated shortly.",
        "paid_unknown": "We could not find this payment. If you paid, your balance is updated shortly.",
        "paid_back": "Back to your account",
        "plan_title": "Pay in instalments",
        "plan_intro": "Split what you owe into equal payments. We will not send reminders while you keep to "
        "the plan.",
        "plan_count": "Number of payments",
        "plan_every": "How often",
        "plan_every_week": "Every week",
        "plan_every_fortnight": "Every two weeks",
        "plan_every_month": "Every month",
        "plan_first": "First payment on",
        "plan_button": "See the payment schedule",
        "plan_schedule": "Your payment schedule",
        "plan_number": "Payment",
        "plan_date": "Date",
        "plan_amount": "Amount",
        "plan_total": "Total",
        "plan_confirm": "Choose this plan",
        "plan_back": "Back to your account",
        "plan_bad_cadence": "Please choose how often you will pay.",
        "plan_bad_count": "Please choose between 2 and {most} payments.",
        "plan_bad_first": "Please choose a first payment date between today and {last}.",
        "plan_too_long": "The last payment would be after {last}. Please choose fewer payments or pay more "
        "often.",
        "plan_unavailable": "A payment plan is not available for this balance. Please contact us.",
        "done_plan": "Thank you. Your payment plan is recorded; we will send you a confirmation.",
        "offer_title": "Settlement offer",
        "offer_intro": "We can settle your account for {amount} if you pay by {date}.",
        "offer_accept": "Accept this offer",
        "offer_accepted": "You accepted to settle for {amount}, to pay by {date}.",
        "offer_pay": "Pay {amount} now",
        "offer_unavailable": "This offer is no longer available. Please contact us.",
        "offer_stale": "This offer no longer fits your account: you now owe {balance}, and a settlement must be "
        "less than that, in the same currency. Please contact us for a new offer.",
        "done_offer": "Thank you. You accepted the settlement offer; please pay by the date shown.",
    },
    "es": {
        "title": "Su cuenta",
        "verify_title": "Confirme que es usted",
        "verify_intro": "Para proteger su privacidad, escriba los 4 últimos dígitos del teléfono que tenemos "
        "registrado. No mostramos nada de la cuenta hasta entonces.",
        "verify_label": "4 últimos dígitos de su teléfono",
        "verify_button": "Continuar",
        "verify_wrong": "No coincide con nuestros datos. Inténtelo de nuevo.",
        "verify_locked": "Demasiados intentos. Por su seguridad este enlace queda bloqueado un tiempo; "
        "inténtelo más tarde o contáctenos.",
        "verify_unavailable": "No podemos mostrar esta cuenta en línea. Contáctenos.",
        "link_invalid": "Este enlace no es válido. Use el enlace del último mensaje que le enviamos o "
        "contáctenos.",
        "link_expired": "Este enlace ha caducado. Use el enlace del último mensaje que le enviamos o "
        "contáctenos.",
        "session_over": "Su visita ha terminado. Abra de nuevo el enlace de su mensaje.",
        "greeting": "Hola {name}",
        "owed": "Importe adeudado",
        "due": "Vencido desde",
        "settled": "Esta cuenta no tiene deuda. Gracias.",
        "promise_title": "Promesa de pago",
        "promise_intro": "Díganos el día en que pagará; no le enviaremos recordatorios hasta entonces.",
        "promise_date": "Fecha",
        "promise_amount": "Importe (opcional)",
        "promise_button": "Prometer el pago",
        "dispute_title": "Disputar esta deuda",
        "dispute_intro": "Si cree que es un error, díganos por qué. Los recordatorios se detienen mientras lo "
        "revisamos.",
        "dispute_note": "¿Qué está mal?",
        "dispute_button": "Abrir una disputa",
        "optout_title": "Dejar de recibir mensajes",
        "optout_intro": "Elija un canal por el que no debamos contactarle más.",
        "optout_button": "Dejar de recibir",
        "channel_sms": "Mensajes de texto (SMS)",
        "channel_email": "Correo electrónico",
        "channel_whatsapp": "WhatsApp",
        "done_promise": "Gracias. Su promesa de pago queda registrada.",
        "done_dispute": "Gracias. Su disputa queda registrada; le contactaremos.",
        "done_opt_out": "Hecho. No volveremos a contactarle por ese canal.",
        "bad_date": "Elija una fecha entre hoy y el {last}.",
        "bad_amount": "Escriba un importe como 25.00.",
        "bad_note": "Cuéntenos en pocas palabras (hasta 1000 caracteres).",
        "sign_out": "Salir",
        "contact": "¿Preguntas? Contacte con {brand}",
        "too_many": "Demasiadas solicitudes. Espere un minuto e inténtelo de nuevo.",
        "other_language": "English",
        "pay_title": "Pagar ahora",
        "pay_intro": "Pague con tarjeta en la página segura de nuestro proveedor de pagos. Los recordatorios "
        "se detienen al pagar.",
        "pay_full": "Pagar todo: {amount}",
        "pay_part_label": "O pagar una parte: importe",
        "pay_part_hint": "Como mínimo {least}.",
        "pay_part": "Pagar este importe",
        "pay_description": "Pago a {brand}",
        "pay_too_much": "Es más de lo que debe ({most}). Escriba un importe menor.",
        "pay_too_little": "El pago mínimo que podemos aceptar es {least}.",
        "pay_unavailable": "El pago en línea no está disponible ahora. Inténtelo más tarde o contáctenos.",
        "done_pay_cancelled": "El pago se canceló; no se cobró nada.",
        "paid_title": "Gracias",
        "paid_done": "Hemos recibido su pago de {amount}. Su saldo se actualiza en un minuto.",
        "paid_pending": "Su pago de {amount} se está procesando. Su saldo se actualiza cuando se confirme.",
        "paid_no_visit": "Gracias. Si su pago se realizó, su saldo se actualizará en breve.",
        "paid_unknown": "No encontramos este pago. Si pagó, su saldo se actualizará en breve.",
        "paid_back": "Volver a su cuenta",
        "plan_title": "Pagar a plazos",
        "plan_intro": "Divida lo que debe en pagos iguales. No le enviaremos recordatorios mientras cumpla el "
        "plan.",
        "plan_count": "Número de pagos",
        "plan_every": "Frecuencia",
        "plan_every_week": "Cada semana",
        "plan_every_fortnight": "Cada dos semanas",
        "plan_every_month": "Cada mes",
        "plan_first": "Primer pago el",
        "plan_button": "Ver el calendario de pagos",
        "plan_schedule": "Su calendario de pagos",
        "plan_number": "Pago",
        "plan_date": "Fecha",
        "plan_amount": "Importe",
        "plan_total": "Total",
        "plan_confirm": "Elegir este plan",
        "plan_back": "Volver a su cuenta",
        "plan_bad_cadence": "Elija con qué frecuencia pagará.",
        "plan_bad_count": "Elija entre 2 y {most} pagos.",
        "plan_bad_first": "Elija una fecha para el primer pago entre hoy y el {last}.",
        "plan_too_long": "El último pago sería después del {last}. Elija menos pagos o pague con más "
        "frecuencia.",
        "plan_unavailable": "No hay plan de pagos disponible para este saldo. Contáctenos.",
        "done_plan": "Gracias. Su plan de pagos queda registrado; le enviaremos una confirmación.",
        "offer_title": "Oferta de liquidación",
        "offer_intro": "Podemos liquidar su cuenta por {amount} si paga a más tardar el {date}.",
        "offer_accept": "Aceptar esta oferta",
        "offer_accepted": "Aceptó liquidar por {amount}, a pagar a más tardar el {date}.",
        "offer_pay": "Pagar {amount} ahora",
        "offer_unavailable": "Esta oferta ya no está disponible. Contáctenos.",
        "offer_stale": "Esta oferta ya no corresponde a su cuenta: ahora debe {balance}, y una liquidación debe "
        "ser menor que eso, en la misma moneda. Contáctenos para una nueva oferta.",
        "done_offer": "Gracias. Aceptó la oferta de liquidación; pague a más tardar en la fecha indicada.",
    },
}

# the contact-preferences section brings its own words (preferences/text.py)
for _lang, _words in PREFERENCES_TEXT.items():
    TEXT[_lang].update(_words)


def pick(query_lang: str | None, accept_language: str | None, fallback: str = "en") -> str:
    if query_lang in LANGUAGES:
        return query_lang
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()[:2]
        if tag in LANGUAGES:
            return tag
    return fallback

"""Intent rules as data, evaluated in order; the first rule that matches decides.

Order matters and encodes the policy:
1. exact CTIA/TCPA opt-out and help keywords (the whole message, ignoring case, spaces and punctuation);
2. guards that look like an opt-out but are not one ("don't stop", "stop calling me at work");
3. plain-language revocations — any reasonable revocation is honoured (FCC 2024 order), so they come before
   every other intent: "stop texting me, call me instead" is an opt-out first;
4. the remaining intents, most specific first;
5. anything else is `other` with low confidence (a person looks at it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from arrears_shared.events import Intent


class Match(StrEnum):
    KEYWORD = "keyword"  # compact(text) is one of `keywords`
    KEYWORD_POLITE = "keyword_polite"  # one keyword word plus only courtesy words ("STOP por favor")
    PATTERN = "pattern"  # regex search over normalize(text)


class Needs(StrEnum):
    NOTHING = "nothing"
    PROMISE_DETAILS = "promise_details"  # matches only if an amount or a date was extracted


@dataclass(frozen=True)
class Rule:
    name: str
    intent: Intent
    confidence: float
    match: Match
    keywords: frozenset[str] = frozenset()
    patterns: tuple[str, ...] = ()
    needs: Needs = Needs.NOTHING
    compiled: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "compiled", tuple(re.compile(p) for p in self.patterns))


OPT_OUT_KEYWORDS = frozenset(
    {"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke", "optout", "stopp", "stpo"}
)
HELP_KEYWORDS = frozenset({"help", "info", "ayuda"})
COURTESY_WORDS = frozenset(
    {
        "please", "pls", "plz", "por", "favor", "porfavor", "thanks", "thank", "you", "thx", "now", "asap",
        "gracias", "merci", "svp", "bitte", "danke", "all", "me", "it", "texts", "messages", "msgs",
        "immediately", "ok", "okay", "the", "this",
    }
)  # fmt: skip

_ME = r"(?:me|us|this number|my number|my phone)"
_TEXT = (
    r"(?:text(?:ing)?|txt(?:ing)?|messag(?:e|es|ing)|msgs?|sms|sending (?:me )?(?:texts|messages|msgs|these))"
)
_DAYS = r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
_PAY = (
    r"(?:pay|paying|send(?:ing)?(?: you)?(?: the)?(?: money| payment| it|(?= ?\$| ?\d))|make (?:a )?payment|"
    r"have (?:it|this|the (?:balance|bill)) paid|take care of (?:it|this|that|the balance)|settle (?:it|up))"
)
_AMOUNTISH = r"(?:\$?\d[\d,.]*(?: dollars| bucks)?|half|the rest|the balance|it|everything|all of it)"

RULES: tuple[Rule, ...] = (
    Rule("opt_out_keyword", Intent.OPT_OUT, 1.0, Match.KEYWORD, keywords=OPT_OUT_KEYWORDS),
    Rule("help_keyword", Intent.HELP, 1.0, Match.KEYWORD, keywords=HELP_KEYWORDS),
    Rule("opt_out_keyword_polite", Intent.OPT_OUT, 0.95, Match.KEYWORD_POLITE, keywords=OPT_OUT_KEYWORDS),
    # -- guards: look like an opt-out, are not an SMS opt-out ------------------------------------------
    Rule(
        "negated_stop", Intent.OTHER, 0.3, Match.PATTERN, patterns=(r"\b(?:don'?t|do not|dont|never) stop\b",)
    ),
    Rule(
        "no_contact_at_work",
        Intent.OTHER,
        0.5,
        Match.PATTERN,
        patterns=(
            r"\b(?:stop|quit|don'?t|do not|dont|no) (?:calling|call|phoning|emailing|email|contacting|contact)"
            r"(?: me)? (?:at|during) (?:my )?(?:work|job|office|the office)\b",
            r"\bnot at (?:my )?(?:work|job|office)\b",
        ),
    ),
    Rule(
        "no_calls_restriction",
        Intent.OTHER,
        0.5,
        Match.PATTERN,
        patterns=(r"\b(?:don'?t|do not|dont|never|stop|quit) (?:call|calling|phone|phoning) (?:me|us|my)\b",),
    ),
    # -- plain-language revocation ---------------------------------------------------------------------
    Rule(
        "opt_out_plain",
        Intent.OPT_OUT,
        0.9,
        Match.PATTERN,
        patterns=(
            rf"\b(?:stop|quit|cease) {_TEXT}\b",
            r"\b(?:stop|quit|cease|end|cancel) (?:the |these |those |your |all |all the |all these )?"
            r"(?:text|txt|sms|message|msg)s?(?: alerts| messages| reminders)?\b",
            r"(?<!don't )(?<!dont )(?<!not )\bunsubscribe\b",
            r"\b(?:do not|don'?t|dont|no longer) consent\b",
            rf"\b(?:don'?t|do not|dont|never) (?:ever )?(?:contact|reach|message) {_ME} (?:by|via|through|over) "
            r"(?:text|txt|sms)\b",
            r"\barret(?:ez|e|er)? (?:les |de m'?envoyer (?:des )?)?(?:messages|textos|sms)\b",
            rf"\b(?:don'?t|do not|dont|never) (?:ever )?{_TEXT} {_ME}\b",
            r"\b(?:don'?t|do not|dont) (?:want|need) (?:any )?(?:more )?(?:your )?(?:texts|messages|sms)\b",
            r"\bno more (?:texts|messages|sms|txts)\b",
            rf"\b(?:remove|delete|take) {_ME} (?:off|from)\b",
            rf"\bremove {_ME}\b",
            rf"\bunsubscribe {_ME}\b",
            r"\b(?:opt|opting) (?:me )?out\b",
            r"\bleave me alone\b",
            r"\bstop contacting me\b",
            r"\b(?:i )?revoke (?:my )?consent\b",
            r"\bno (?:me )?(?:escriban|manden|envien) (?:mas )?(?:mensajes|textos)?",
            r"\bno mas (?:mensajes|textos)\b",
            r"\bdejen? de (?:escribir|enviar|mandar)",
        ),
    ),
    Rule(
        "wrong_number",
        Intent.WRONG_NUMBER,
        0.95,
        Match.PATTERN,
        patterns=(
            r"\bwrong (?:number|person|num|no|guy|gal|girl|man|lady|dude)\b",
            r"\bno [a-z]+ (?:at|on) this (?:number|phone)\b",
            r"\bwrong ?#",
            r"\bwrong num\b",
            r"\bnumero equivocado\b",
            r"\b(?:i'?m|i am|this is) not (?:him|her|them|the person)\b",
            r"\b(?:no one|noone|nobody) (?:here )?(?:by|with|named|called)\b",
            r"\b(?:i )?don'?t know (?:who )?(?:this person|(?:him|her|them))\b",
            r"\b(?:i )?don'?t know who (?:that|this|they|he|she) (?:is|are)\b",
            r"^(?:sorry,? )?(?:i'?m|i am) not (?!(?:able|going|sure|paying|interested|ready|working|employed|"
            r"home|available|aware|happy|ok|okay|the one|responsible|liable)\b)[a-z]+[.!]?$",
            r"\b(?:isn'?t|is not|not) [a-z]+'s (?:phone|number|cell)\b",
            r"\bnot (?:his|her|their) (?:phone|number|cell)\b",
            r"\bnew (?:number|phone)\b.*\bnot\b",
        ),
    ),
    Rule(
        "dispute",
        Intent.DISPUTE,
        0.9,
        Match.PATTERN,
        patterns=(
            r"\bnot my (?:debt|bill|account|loan|balance|invoice)\b",
            r"\bi (?:formally )?dispute\b",
            r"\bdisput(?:e|ing) (?:this|the|that)\b",
            r"\b(?:i )?(?:do not|don'?t|dont) owe\b",
            r"\bi owe (?:you )?nothing\b",
            r"\bnever (?:had|opened|signed up for) (?:an? |this )?(?:account|loan|service)\b",
            r"\bthis (?:is|isn'?t) (?:not )?mine\b",
            r"\b(?:debt|account|bill|balance|loan|charge) (?:isn'?t|is not|aint) (?:mine|my)\b",
            r"\bnever heard of (?:you|your company|this company|this|them)\b",
            r"\b(?:this is )?(?:a )?(?:scam|fraud)\b",
            r"\bidentity theft\b",
            r"\bverif(?:y|ication) (?:of )?(?:this |the )?debt\b",
            r"\bvalidat(?:e|ion) (?:of )?(?:this |the |my )?debt\b",
            r"\bproof (?:of|that) (?:this |the |my )?(?:debt|balance|i owe)\b",
            r"\b(?:do not|don'?t|dont) recogni[sz]e\b",
            r"\b(?:amount|balance|bill|charge|total|invoice) (?:is|was|seems|looks) (?:wrong|incorrect|not right|"
            r"too high|inaccurate|off)\b",
            r"\bnever (?:billed|received|ordered|used|got)\b",
            r"\b(?:charged (?:me )?twice|double charged|overcharged)\b",
            r"\bno (?:es|reconozco) (?:mi |esta |esa )?deuda\b",
            r"\bno reconozco\b",
        ),
    ),
    Rule(
        "paid_claim",
        Intent.PAID_CLAIM,
        0.9,
        Match.PATTERN,
        patterns=(
            r"\b(?:already|allready|alredy|just) pa(?:id|yed)\b",
            r"\bi (?:have |had )?pa(?:id|yed)\b",
            r"\bpa(?:id|yed) (?:it|this|that|the (?:bill|balance|invoice)|in full|off|yesterday|today|last)\b",
            r"\bpayment (?:was |has been )?(?:made|sent|submitted|done)\b",
            r"\b(?:i )?(?:sent|made|mailed) (?:the |a |my )?(?:payment|check|cheque)\b",
            r"\bya (?:lo )?pague\b",
            r"\b(?:was|been|has been|have been|is) (?:already )?pa(?:id|yed)\b",
            r"\b(?:already|just) (?:took|taken) care of (?:it|this|that)\b",
        ),
    ),
    Rule(
        "promise_to_pay_details",
        Intent.PROMISE_TO_PAY,
        0.9,
        Match.PATTERN,
        needs=Needs.PROMISE_DETAILS,
        patterns=(
            rf"\b(?:i'?ll|i will|ill|will|can|could|i can|gonna|going to|i'?m going to|plan to|promise to|"
            rf"able to) {_PAY}\b",
            rf"\b(?:can|could) (?:i|we) {_PAY}\b",
            rf"(?<!can't )(?<!cannot )(?<!cant )\b{_PAY} (?:you )?(?:it |{_AMOUNTISH} )?"
            rf"(?:on|by|next|this|tomorrow|today|tonight|the|{_DAYS})\b",
            r"\b(?:i )?(?:can|could) (?:do|manage) \$?\d",
            r"\b(?:te |le )?pago (?:el|la|mañana|manana|el proximo)\b",
        ),
    ),
    Rule(
        "promise_terse",
        Intent.PROMISE_TO_PAY,
        0.7,
        Match.PATTERN,
        needs=Needs.PROMISE_DETAILS,
        patterns=(
            r"^\W*(?:\d{1,2}[/.-]\d{1,2}|\$?\d[\d,.]*)\W+(?:half|the rest|rest|all|full|in full|balance|\$?\d[\d,.]*)\W*$",
        ),
    ),
    Rule(
        "hardship",
        Intent.HARDSHIP,
        0.85,
        Match.PATTERN,
        patterns=(
            r"\blost (?:my|our) (?:job|work|income|house)\b",
            r"\b(?:passed away|died|death in the family|funeral|divorce|on disability|disabled|surgery)\b",
            r"\b(?:can'?t|cannot|cant|unable to|not able to) make (?:the |my |any |these )?payments?\b",
            r"\b(?:out of work|between jobs|no job)\b",
            r"\bno tengo (?:dinero|trabajo|plata)\b",
            r"\b(?:can'?t|cannot|cant|unable to|not able to) afford\b",
            r"\b(?:unemployed|laid off|layed off|furloughed|hardship|bankrupt(?:cy)?)\b",
            r"\b(?:in|out of) (?:the )?hospital\b",
            r"\bmedical (?:bills|emergency|leave|issues)\b",
            r"\bno (?:money|income|work)\b",
            r"\b(?:struggling|broke) (?:financially|right now|atm)?\b",
            r"\b(?:can'?t|cannot|cant) pay\b",
            r"\bpayment plan\b",
            r"\bsin trabajo\b",
        ),
    ),
    Rule(
        "promise_to_pay",
        Intent.PROMISE_TO_PAY,
        0.8,
        Match.PATTERN,
        patterns=(
            rf"\b(?:i'?ll|i will|ill|will|gonna|going to|i'?m going to|plan to|promise to) {_PAY}\b",
            r"\bpromise to pay\b",
            r"\bpay(?:ing)? (?:it |this )?(?:soon|asap|shortly)\b",
        ),
    ),
    Rule(
        "callback_request",
        Intent.CALLBACK_REQUEST,
        0.85,
        Match.PATTERN,
        patterns=(
            r"\b(?:please |pls |can (?:you|someone|somebody|u) |could (?:you|someone|somebody) )?call me\b",
            r"\bgive me a (?:call|ring)\b",
            r"\bcall (?:me )?back\b",
            r"\b(?:speak|talk) (?:to|with) (?:someone|somebody|a person|a human|an agent|a real person)\b",
            r"\bphone me\b",
            r"\b(?:talk|speak) (?:on|over) the phone\b",
            r"\b(?:number|phone) (?:to|i can|can i) (?:call|reach)\b",
            r"\bhow (?:can|do) i (?:call|reach|contact) (?:you|someone)\b",
            r"\bllamame\b",
        ),
    ),
    Rule(
        "help_plain",
        Intent.HELP,
        0.6,
        Match.PATTERN,
        patterns=(
            r"\bwho (?:is this|are you|r u|is dis)\b",
            r"\bwho(?:'s| is) (?:texting|messaging|contacting|writing)\b",
            r"\bwhat (?:company|business|agency|firm) is (?:this|it)\b",
            r"\bwhat(?:'?s| is) this (?:about|for|regarding|re)\b",
            r"\bhelp\b",
            r"\bmore info\b",
            r"\bquien (?:es|eres|habla)\b",
            r"\bis this (?:legit|real|legitimate)\b",
        ),
    ),
)

FALLBACK_CONFIDENCE = 0.2

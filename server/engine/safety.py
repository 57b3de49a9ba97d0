"""Terms that safe mode keeps out of suggestions: sexual content and hate.

Deliberately small and explicit: it stops the engine from *suggesting* these words; it does
not judge what the user types. Entries are whole words (matched case-insensitively, plural
and common variants listed) or, where spelling varies a lot, regular expressions.
"""

from __future__ import annotations

# fmt: off
SEXUAL_TERMS = (
    "nsfw", "nude", "nudes", "nudity", "naked", "topless", "bottomless", "porn", "porno",
    "pornographic", "pornography", "hentai", "ecchi", "sex", "sexual", "sexy", "erotic",
    "erotica", "lewd", "xxx", "nipple", "nipples", "areola", "areolas", "breasts", "boobs",
    "tits", "cleavage", "genitals", "genitalia", "penis", "vagina", "pussy", "cock",
    "testicles", "orgasm", "cum", "semen", "fetish", "bdsm", "bondage", "lingerie", "upskirt",
    "stripper", "striptease", "onlyfans", "playboy", "seductive", "horny", "loli", "lolicon",
    "shota", "shotacon",
)
# fmt: on

# fmt: off
HATEFUL_TERMS = (
    "nigger", "niggers", "nigga", "niggas", "faggot", "faggots", "fag", "fags", "kike", "kikes",
    "chink", "chinks", "spic", "spics", "wetback", "wetbacks", "tranny", "trannies", "retard",
    "retards", "retarded", "gook", "gooks", "raghead", "ragheads", "coon", "coons", "swastika",
    "kkk", "white power", "heil hitler", "sieg heil",
)
# fmt: on

# Stems whose many inflections a word list would miss.
PATTERNS = (
    r"masturbat\w*",
    r"\w*(?:fuck|porn|hentai)\w*",
    r"sex(?:ualized|ualised|ually)",
)

SAFE_MODE_TERMS: tuple[str, ...] = SEXUAL_TERMS + HATEFUL_TERMS

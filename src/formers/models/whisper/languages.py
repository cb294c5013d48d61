"""Whisper's language tokens: the order of <|xx|> after <|startoftranscript|> is the order below."""
from __future__ import annotations

_CODES_AND_NAMES = """
en english|zh chinese|de german|es spanish|ru russian|ko korean|fr french|ja japanese|pt portuguese|tr turkish|
pl polish|ca catalan|nl dutch|ar arabic|sv swedish|it italian|id indonesian|hi hindi|fi finnish|vi vietnamese|
he hebrew|uk ukrainian|el greek|ms malay|cs czech|ro romanian|da danish|hu hungarian|ta tamil|no norwegian|
th thai|ur urdu|hr croatian|bg bulgarian|lt lithuanian|la latin|mi maori|ml malayalam|cy welsh|sk slovak|
te telugu|fa persian|lv latvian|bn bengali|sr serbian|az azerbaijani|sl slovenian|kn kannada|et estonian|
mk macedonian|br breton|eu basque|is icelandic|hy armenian|ne nepali|mn mongolian|bs bosnian|kk kazakh|
sq albanian|sw swahili|gl galician|mr marathi|pa punjabi|si sinhala|km khmer|sn shona|yo yoruba|so somali|
af afrikaans|oc occitan|ka georgian|be belarusian|tg tajik|sd sindhi|gu gujarati|am amharic|yi yiddish|lo lao|
uz uzbek|fo faroese|ht haitian creole|ps pashto|tk turkmen|nn nynorsk|mt maltese|sa sanskrit|
lb luxembourgish|my myanmar|bo tibetan|tl tagalog|mg malagasy|as assamese|tt tatar|haw hawaiian|ln lingala|
ha hausa|ba bashkir|jw javanese|su sundanese|yue cantonese
"""
LANGUAGES: dict[str, str] = dict(
    entry.strip().split(" ", 1) for entry in _CODES_AND_NAMES.replace("\n", "").split("|"))

_ALIASES = {"burmese": "my", "valencian": "ca", "flemish": "nl", "haitian": "ht", "letzeburgesch": "lb",
            "pushto": "ps", "panjabi": "pa", "moldavian": "ro", "moldovan": "ro", "sinhalese": "si",
            "castilian": "es", "mandarin": "zh"}
TO_LANGUAGE_CODE: dict[str, str] = {**{name: code for code, name in LANGUAGES.items()}, **_ALIASES}
TASK_IDS = ["translate", "transcribe"]


def language_code(language: str) -> str:
    """'English', 'english', 'en' or '<|en|>' -> 'en'; raises KeyError for an unknown language."""
    key = language.lower().removeprefix("<|").removesuffix("|>")
    if key in TO_LANGUAGE_CODE:
        return TO_LANGUAGE_CODE[key]
    if key in LANGUAGES:
        return key
    raise KeyError(language)

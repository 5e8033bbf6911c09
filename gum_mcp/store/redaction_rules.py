"""More redaction rules: finders that `redaction.Redactor` adds to its built-in rules.

Each finder here takes a stretch of text (free of `[REDACTED:...]` tokens) and returns sorted, non-overlapping
(start, end) spans to replace; `redaction.py` wires them in, in order, with a kind and a prefilter. They were
written against the tuning half of `tests/fixtures/redaction_corpus.jsonl` and are measured on its held-out half
by `bench/redaction.py`.

* provider key formats beyond the common ones (Mailgun, xAI, DigitalOcean, Linear, Docker, Shopify, Groq,
  Replicate, Perplexity, SendGrid, Twilio, Notion, Postman, Atlassian, Databricks, New Relic, Figma, Sentry,
  Slack and Discord webhooks, Telegram and Discord bots, PyPI, Stripe webhooks);
* cloud credentials: AWS secret access keys (bare, 40 characters with a ``/`` or ``+``; or after an access key
  id; or after words that name them), AWS session tokens, Azure account keys, SAS signatures and client secrets,
  GCP OAuth client secrets, Alibaba access key ids;
* private keys in other shapes: PuTTY private lines, DER keys in base64, a JWK's private members, age
  secret keys, wallet recovery phrases;
* a secret-looking value (long, mixed, high entropy) shortly after words that name a secret
  ("secret key", "private key", "token", "credentials", "<provider> key", ...), and a random-looking
  literal passed to a call (``cohere.Client("...")``);
* passwords in more config forms (SQL ``IDENTIFIED BY``, ``auth=(user, pass)``, ``sshpass -p``, ``.pgpass``
  lines, ``--db-password x``, ``<password>x</password>``, ``<add key="..Password" value="x"/>``, Kubernetes
  env pairs, ``ConvertTo-SecureString``, ``net user``, ``htpasswd -b``, ``docker login -p``, Wi-Fi QR codes,
  ...) and in prose, in several languages ("password hunter2", "my password is ...", "Passwort: ...",
  "use ... as the password", "X is the wifi password", a "Password:" label above its value, Markdown and
  HTML around them);
* card numbers grouped with dots, double spaces or spaced dashes;
* national ids: UK National Insurance, Canadian SIN, Spanish DNI / NIE, French NIR, Indian Aadhaar, Dutch BSN,
  Italian codice fiscale, and US SSNs written with spaces or without separators next to the word;
* contacts (``GUM_REDACT_CONTACTS``): email addresses and phone numbers.

All patterns avoid catastrophic backtracking (possessive quantifiers, bounded repetitions).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable

Span = tuple[int, int]

# ---------------------------------------------------------------------------------------------
# shared checks


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i & 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    if not value:
        return 0.0
    counts = Counter(value)
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def not_filler(value: str) -> bool:
    """False for placeholder bodies such as `xxxxxxxx` or `000000`."""
    return len(set(value)) >= 6


_FILLER_RE = re.compile(r"[^\s]{0,12}?(?:[xX]{6,}|[*•]{4,}|\.{3,}|0{8,})")


def is_filler(value: str) -> bool:
    """A placeholder value: `ghp_xxxxxxxxxxxx`, `sk-...`, `********`, `xxx-xxx-xxx`."""
    return _FILLER_RE.fullmatch(value) is not None or (len(value) >= 3 and set(value) <= _FILLER_CHARS)


_FILLER_CHARS = frozenset("xX*•._- ")
_PLACEHOLDER_WORDS = frozenset(
    {"your", "yours", "here", "replace", "replaceme", "changeme", "placeholder", "example", "insert", "todo", "fixme",
     "dummy", "sample", "redacted", "xxx", "xxxx", "tbd", "enter", "put"}
)
_PLACEHOLDER_TEXT_RE = re.compile(r"[A-Za-z0-9_.\- ]{2,80}")


def is_placeholder_words(value: str) -> bool:
    """Words that stand for a value: YOUR_TOKEN_HERE, your-secret-key, REPLACE_ME, sk-your-key-here."""
    if _PLACEHOLDER_TEXT_RE.fullmatch(value) is None:
        return False
    words = [w for w in re.split(r"[^a-z0-9]+", value.lower()) if w]
    return any(w in _PLACEHOLDER_WORDS for w in words) or "replace_me" in value.lower() \
        or "change_me" in value.lower()


_PATH_PART_RE = re.compile(r"[a-z0-9._-]*[a-z]{3,}[a-z0-9._-]*|[0-9]{1,4}")
_WORDISH_RE = re.compile(r"[A-Z]?[a-z]{4,}")
_WORD_RE = re.compile(r"[A-Z]?[a-z]*[aeiouy][a-z]*")


def wordy(name: str) -> bool:
    """An identifier made of words (`getpass.getpass`, `get_token`, `loadConfig`), not random letters."""
    words = [w for w in _WORD_RE.findall(name) if len(w) >= 3 or w.lower() in ("os", "io", "db")]
    letters = sum(c.isalpha() for c in name)
    return letters > 0 and sum(len(w) for w in words) * 2 >= letters and not any(c.isdigit() for c in name[:-1])


_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_HEX_RE = re.compile(r"[0-9a-fA-F]+")


def looks_random(value: str, *, min_length: int = 16) -> bool:
    """A value that looks like generated key material rather than a word, a path, a version or an id."""
    if len(value) < min_length or not any(c.isdigit() for c in value):
        return False
    letters = sum(c.isalpha() for c in value)
    if letters < 2 or _UUID_RE.fullmatch(value):
        return False
    core = value.rstrip("=")
    if core.startswith(("0x", "0X")) and _HEX_RE.fullmatch(core[2:]):
        core = core[2:]
    if _HEX_RE.fullmatch(core):
        return len(core) >= 32 and entropy(core) >= 3.0
    words = sum(len(w) for w in _WORDISH_RE.findall(core))
    if words * 2 > len(core):
        return False  # mostly words: an identifier, a dotted name, a sentence
    has_upper = any(c.isupper() for c in core)
    has_lower = any(c.islower() for c in core)
    if not (has_upper and has_lower) and not any(c in "+/" for c in core):
        return False
    parts = core.split("/")
    if len(parts) >= 3 and sum(_PATH_PART_RE.fullmatch(part) is not None for part in parts) * 2 >= len(parts):
        return False  # a path: most of its parts are lower-case names or numbers
    return entropy(core) >= 3.2


# ---------------------------------------------------------------------------------------------
# provider key formats and cloud credentials

#: (kind, pattern, validator, hints). Each pattern starts with a literal (or a group of them) and checks the
#: start-of-word condition right after it, as in redaction.py.
KEY_SPECS: tuple[tuple[str, str, Callable[[str], bool] | None, tuple[str, ...]], ...] = (
    ("api_key", r"(?<![\w-])key-[0-9a-f]{32}(?![\w-])", None, ("key-",)),  # Mailgun
    ("api_key", r"(?<![\w-])xai-[A-Za-z0-9]{40,}+", None, ("xai-",)),
    ("api_key", r"(?<![\w-])do[opr]_v1_[0-9a-f]{64}(?![\w-])", None, ("_v1_",)),
    ("api_key", r"(?<![\w-])lin_(?:api|oauth)_[A-Za-z0-9]{32,}+", None, ("lin_",)),
    ("api_key", r"(?<![\w-])dckr_pat_[A-Za-z0-9_-]{20,}+", None, ("dckr_",)),
    ("api_key", r"(?<![\w-])shp(?:at|ss|ca|pa)_[0-9a-fA-F]{32}(?![\w-])", None, ("shp",)),
    ("api_key", r"(?<![\w-])gsk_[A-Za-z0-9]{40,}+", None, ("gsk_",)),
    ("api_key", r"(?<![\w-])r8_[A-Za-z0-9]{30,}+", None, ("r8_",)),
    ("api_key", r"(?<![\w-])pplx-[A-Za-z0-9]{40,}+", None, ("pplx-",)),
    ("api_key", r"(?<![\w.-])SG\.[A-Za-z0-9_-]{16,32}\.[A-Za-z0-9_-]{30,50}", None, ("sg.",)),
    ("api_key", r"(?<![\w-])SK[0-9a-f]{32}(?![\w-])", None, ("sk",)),  # Twilio API key SID
    ("api_key", r"(?<![\w-])whsec_[A-Za-z0-9+/=]{24,}+", None, ("whsec_",)),
    ("api_key", r"(?<![\w-])secret_[A-Za-z0-9]{43}(?![\w-])", None, ("secret_",)),  # Notion
    ("api_key", r"(?<![\w-])ntn_[A-Za-z0-9]{40,}+", None, ("ntn_",)),
    ("api_key", r"(?<![\w-])PMAK-[0-9a-f]{24}-[0-9a-f]{34}", None, ("pmak-",)),
    ("api_key", r"(?<![\w-])ATATT[A-Za-z0-9_=-]{60,}+", None, ("atatt",)),
    ("api_key", r"(?<![\w-])dapi[0-9a-f]{32}(?:-\d)?(?![\w-])", None, ("dapi",)),
    ("api_key", r"(?<![\w-])NRAK-[A-Z0-9]{27}(?![\w-])", None, ("nrak-",)),
    ("api_key", r"(?<![\w-])figd_[A-Za-z0-9_-]{30,}+", None, ("figd_",)),
    ("api_key", r"(?<![\w-])sntr[ysu]s?_[A-Za-z0-9+/=_-]{40,}+", None, ("sntr",)),
    ("api_key", r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}+", None, ("pypi-",)),
    ("api_key", r"(?<![\w-])xox[baprse]-[A-Za-z0-9-]{10,}+", None, ("xox",)),
    ("api_key", r"(?<![\w.-])hv[sbr]\.[A-Za-z0-9_-]{24,}+", None, ("hvs.", "hvb.", "hvr.")),  # Vault
    ("api_key", r"(?<![\w.-])[A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_=-]{60,}+", None, ("atlasv1",)),  # Terraform
    ("api_key", r"(?<![\w-])pul-[0-9a-f]{40}(?![\w-])", None, ("pul-",)),  # Pulumi
    ("api_key", r"(?<![\w-])sbp_[0-9a-f]{40}(?![\w-])", None, ("sbp_",)),  # Supabase
    ("api_key", r"(?<![\w-])nf[pc]_[A-Za-z0-9_-]{30,}+", None, ("nfp_", "nfc_")),  # Netlify
    ("api_key", r"(?<![\w-])gl(?:sa|c)_[A-Za-z0-9_=-]{32,}+", None, ("glsa_", "glc_")),  # Grafana
    ("api_key", r"(?<![\w-])sk_[0-9a-f]{40,}+", None, ("sk_",)),  # ElevenLabs
    ("api_key", r"(?<![\w-])lsv2_(?:pt|sk)_[0-9a-f]{32}_[0-9a-f]{10}", None, ("lsv2_",)),  # LangSmith
    ("api_key", r"(?<![\w-])pcsk_[A-Za-z0-9_]{40,}+", None, ("pcsk_",)),  # Pinecone
    ("api_key", r"(?<![\w-])sq0(?:atp|csp)-[A-Za-z0-9_-]{22,}+", None, ("sq0",)),  # Square
    ("api_key", r"(?<![\w-])EAA[A-Za-z0-9]{80,}+", None, ("eaa",)),  # Facebook / Square access tokens
    ("api_key", r"AAAAAAAAAAAAAAAAAAAAA[A-Za-z0-9%]{40,}+", None, ("aaaaaaaaaaaaaaaaaaaaa",)),  # X / Twitter
    ("api_key", r"(?<![\w.-])(?:sk|tk)\.eyJ[A-Za-z0-9_-]{20,}+\.[A-Za-z0-9_-]{20,}+", None, ("k.eyj",)),
    # Slack and Discord webhooks: the whole URL is the credential (whoever has it can post)
    ("api_key", r"(?:https?://)?hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_-]{20,}+", None,
     ("hooks.slack.com",)),
    ("api_key", r"(?:https?://)?(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/[0-9]{5,}/[A-Za-z0-9_-]{20,}+",
     None, ("webhooks",)),
    # Telegram bot token: <bot id>:<35 characters>
    ("api_key", r"(?<![\w])[0-9]{8,10}:AA[A-Za-z0-9_-]{33}(?![\w-])", None, (":aa",)),
    # Discord bot token: three base64url parts (24-28, 6-7, 27-40 characters)
    ("api_key", r"(?<![\w.-])[A-Za-z0-9_-]{24,28}\.[A-Za-z0-9_-]{6,7}\.[A-Za-z0-9_-]{27,40}(?![\w-]|\.[\w-])",
     lambda v: looks_random(v.split(".")[0], min_length=20), None),
    # cloud
    ("cloud_credential", r"(?:FwoGZXIvYXdzE|IQoJb3JpZ2luX2Vj|FQoGZXIvYXdzE)[A-Za-z0-9+/=]{40,}+", None,
     ("fwogzxivyxdze", "iqojb3jpz2lux2vj", "fqogzxivyxdze")),
    ("cloud_credential", r"(?<![\w-])GOCSPX-[A-Za-z0-9_-]{20,}+", None, ("gocspx-",)),
    ("cloud_credential", r"(?<![\w-])LTAI[A-Za-z0-9]{12,30}(?![\w-])", None, ("ltai",)),
    ("cloud_credential", r"(?<![\w~.-])[A-Za-z0-9_~.-]{3}[0-9]Q~[A-Za-z0-9_~.-]{31,34}(?![\w~-]|\.[\w~.-])", None,
     ("q~",)),
    ("cloud_credential", r"(?i:AccountKey|SharedAccessKey)=(?P<secret>[A-Za-z0-9+/]{20,}+={0,2})", None,
     ("accountkey=", "sharedaccesskey=")),
    ("cloud_credential", r"[?&](?<=[?&])sig=(?P<secret>[A-Za-z0-9%+/=]{20,}+)", None, ("sig=",)),
    ("private_key", r"AGE-SECRET-KEY-1[0-9A-Z]{50,}+", None, ("age-secret-key-",)),
)

# A random-looking string literal passed to a call: `cohere.Client("...")`, `new Stripe('...')`, `bot.run("...")`.
_CALL_LITERAL_RE = re.compile(
    r"(?P<name>[A-Za-z_][\w.]{0,60})\([ \t]*([\"'])(?P<secret>[A-Za-z0-9_-]{20,300}+)\2[ \t]*[,)]"
)
# calls that take ids, names or paths rather than keys
_ID_CALLS = frozenset(
    {"get", "open", "load", "read", "fetch", "find", "lookup", "delete", "remove", "watch", "download", "play",
     "select", "query", "getelementbyid", "queryselector", "require", "import_module", "include", "uuid", "objectid",
     "fromhex", "b64decode", "urlsafe_b64decode", "decode", "encode", "unhexlify", "compile", "match", "search",
     "split", "join", "format", "print", "log", "info", "debug", "warning", "error", "assertequal"}
)


def call_literal_spans(text: str) -> list[Span]:
    spans: list[Span] = []
    for m in _CALL_LITERAL_RE.finditer(text):
        value = m.group("secret")
        if m.group("name").rpartition(".")[2].lower() in _ID_CALLS:
            continue
        if looks_random(value, min_length=20) and _HEX_RE.fullmatch(value) is None:
            spans.append(m.span("secret"))
    return spans


# An AWS access key id followed shortly by its 40-character secret access key: both.
_AWS_PAIR_RE = re.compile(
    r"A[KS]IA(?<![A-Za-z0-9]A[KS]IA)[A-Z0-9]{16}(?![A-Za-z0-9])"
    r"[^\n]{0,60}?(?<![A-Za-z0-9/+=])(?P<secret>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"
)
# A bare AWS secret access key: exactly 40 characters of base64 with a "/" or "+", mixed case and digits.
_AWS_SECRET_RE = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")


def aws_pair_spans(text: str) -> list[Span]:
    spans: list[Span] = []
    for m in _AWS_PAIR_RE.finditer(text):
        if looks_random(m.group("secret"), min_length=40):
            spans.append(m.span("secret"))
    return spans


def aws_secret_spans(text: str) -> list[Span]:
    spans: list[Span] = []
    for m in _AWS_SECRET_RE.finditer(text):
        value = m.group()
        if ("/" in value or "+" in value) and looks_random(value, min_length=40):
            # not a fragment of a longer base64 blob broken across lines
            before = text[max(0, m.start() - 2) : m.start()]
            if before.endswith("\n") and m.start() >= 2 and text[m.start() - 2].isalnum():
                continue
            spans.append(m.span())
    return spans


# DER private keys in base64 (PKCS#8 RSA/EC/Ed25519, PKCS#1 RSA, SEC1 EC), without PEM armour.
_DER_KEY_RE = re.compile(
    r"(?<![A-Za-z0-9+/])(?:MII[A-Za-z0-9+/]{3}(?:IBADANBgkqhkiG9w0BAQEFAASC|IBAAKC)|MIG[A-Za-z0-9+/]{1,2}AgEAMBMG"
    r"|MHcCAQEEI|MC4CAQAwBQYDK2VwBCIEI)[A-Za-z0-9+/=\s]{20,}+"
)
# A JWK's private members ("d", and RSA's "p", "q", "dp", "dq", "qi") when the text has a "kty".
_JWK_PRIVATE_RE = re.compile(r"\"(?:d|p|q|dp|dq|qi)\"[ \t]*:[ \t]*\"(?P<secret>[A-Za-z0-9_-]{16,}+)\"")
# A wallet's recovery phrase: 12 to 24 lower-case words after the words that name it.
_SEED_RE = re.compile(
    r"(?i:seed[ _-]?phrase|recovery[ _-]?phrase|mnemonic(?:[ _-]?phrase)?|secret[ _-]?recovery[ _-]?phrase)"
    r"[^\n\w]{0,10}(?P<secret>[a-z]{3,8}(?:[ \t,]+[a-z]{3,8}){11,23})"
)


def der_key_spans(text: str) -> list[Span]:
    return [(m.start(), m.end() - (len(m.group()) - len(m.group().rstrip()))) for m in _DER_KEY_RE.finditer(text)]


def jwk_spans(text: str) -> list[Span]:
    if '"kty"' not in text:
        return []
    return [m.span("secret") for m in _JWK_PRIVATE_RE.finditer(text)]


def seed_phrase_spans(text: str) -> list[Span]:
    return [m.span("secret") for m in _SEED_RE.finditer(text)]


# PuTTY key files: the lines after "Private-Lines: N".
_PUTTY_RE = re.compile(r"Private-Lines:[ \t]*([0-9]{1,3})[ \t]*\r?\n")


def putty_spans(text: str) -> list[Span]:
    spans: list[Span] = []
    for m in _PUTTY_RE.finditer(text):
        count = int(m.group(1))
        pos = end = m.end()
        for _ in range(count):
            line_end = text.find("\n", pos)
            line_end = len(text) if line_end < 0 else line_end
            line = text[pos:line_end].strip()
            if not line or ":" in line:
                break
            end = line_end
            pos = line_end + 1
            if pos > len(text):
                break
        if end > m.end():
            spans.append((m.end(), end))
    return spans


# ---------------------------------------------------------------------------------------------
# a secret-looking value shortly after words that name a secret

_SECRET_WORDS_RE = re.compile(
    r"(?<![A-Za-z])(?:"
    r"secret(?:[ _-]?(?:access[ _-]?)?key)?|"
    r"(?:api|access|private|signing|encryption|master|client|account|storage|auth|app|service|bot|deploy"
    r"|license|session|subscription|wallet|root|ssh)[ _-]?key(?:[ _-]?secret)?|accesskey[ _-]?secret|"
    r"token|credentials?|creds|password|passwd|passphrase|privkey|mnemonic|authorization|"
    r"(?:openai|anthropic|claude|mistral|cohere|groq|gemini|google|stripe|github|gitlab|slack|twilio|sendgrid|aws"
    r"|azure|gcp|heroku|vercel|netlify|cloudflare|datadog|sentry|notion|linear|jira|figma|hugging[ ]?face|hf"
    r"|replicate|together|fireworks|perplexity|deepseek|openrouter|pinecone|weaviate|qdrant|supabase|firebase"
    r"|mapbox|algolia|mailgun|mailchimp|postmark|shopify|discord|telegram|dropbox|elevenlabs|voyage|xai|grok)"
    r"[ _-]?(?:api[ _-]?)?(?:key|token|secret)s?"
    r")(?![A-Za-z])",
    re.IGNORECASE,
)
#: Substrings (lower case) without which `context_secret_spans` finds nothing.
CONTEXT_HINTS = ("secret", "key", "token", "cred", "pass", "auth", "mnemonic", "privkey")
_CANDIDATE_RE = re.compile(r"[A-Za-z0-9+/=_.~%-]{16,2000}+")
_CANDIDATE_START_RE = re.compile(r"[A-Za-z0-9+/=_.~%-]{16}")
_ONLY_PUNCT_RE = re.compile(r"[ \t:=\"'(\[{>-]*")
_MAX_LINE = 4000  # how far a context looks for the end of its line
_CONTEXT_WINDOW = 80


def context_secret_spans(text: str) -> list[Span]:
    spans: list[Span] = []
    last = 0
    for word in _SECRET_WORDS_RE.finditer(text):
        start = max(word.end(), last)
        line_end = text.find("\n", start, start + _MAX_LINE)
        if line_end < 0:
            line_end = min(len(text), start + _MAX_LINE)
        elif _ONLY_PUNCT_RE.match(text, start, line_end).end() == line_end and line_end + 1 < len(text):
            # "Token:\n<value>": the value is on the next line
            nxt = text.find("\n", line_end + 1, line_end + 1 + _MAX_LINE)
            line_end = min(len(text), line_end + 1 + _MAX_LINE) if nxt < 0 else nxt
        stop = min(line_end, word.end() + _CONTEXT_WINDOW)  # where a value may start
        found = 0
        pos = start
        while (first := _CANDIDATE_START_RE.search(text, pos, min(line_end, stop + 16))) is not None:
            m = _CANDIDATE_RE.match(text, first.start(), line_end)
            assert m is not None
            pos = m.end()
            value = m.group().rstrip(".,;:-")
            value_start = m.start()
            while value and value[0] in "._-~":
                value = value[1:]
                value_start += 1
            if looks_random(value):
                spans.append((value_start, value_start + len(value)))
                last = value_start + len(value)
                found += 1
                if found == 3:
                    break
    return _merge(spans)


# ---------------------------------------------------------------------------------------------
# passwords: more config forms

PASSWORD_PATTERNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (r"(?i:identified[ \t]+(?:with[ \t]+\w+[ \t]+)?by)[ \t]+(['\"])(?P<secret>[^'\"\n]{1,200})\1", ("identified",)),
    # <add key="SmtpPassword" value="..."/>, name: DB_PASSWORD / value: ... (Kubernetes env)
    (r"(?i:key|name)[ \t]*=[ \t]*([\"'])[^\"'\n]{0,60}(?i:password|passwd|pwd|secret|token|apikey|api_key|api-key"
     r"|connectionstring)[^\"'\n]{0,30}\1[ \t]+(?i:value)[ \t]*=[ \t]*([\"'])(?P<secret>[^\"'\n]{1,300})\2",
     ("value",)),
    (r"(?i:name):[ \t]*[\"']?[\w.-]{0,60}(?i:password|passwd|pwd|secret|token|apikey|api_key|_key)[\"']?[ \t]*\r?\n"
     r"[ \t]*(?i:value):[ \t]*[\"']?(?P<secret>[^\s\"']{1,300})", ("value",)),
    # echo secret | docker login --password-stdin / passwd --stdin / chpasswd
    (r"(?i:echo)[ \t]+(?:-n[ \t]+)?([\"']?)(?P<secret>[^\s\"'|]{1,300})\1[ \t]*\|[^\n|]{0,80}"
     r"(?:--password-stdin|passwd|chpasswd|--stdin)", ("echo",)),
    (r"(?i:requirepass|masterauth)[ \t]+([\"']?)(?P<secret>[^\s\"']{1,200})\1", ("requirepass", "masterauth")),
    (r"(?i:echo|printf)[ \t]+(?:-n[ \t]+)?([\"']?)(?P<secret>[^\s\"'|]{1,300})\1[ \t]*\|[ \t]*sudo[ \t]+-S\b",
     ("sudo",)),
    (r"(?i:redis-cli)\b[^\n]{0,100}?[ \t]-a[ \t]+([\"']?)(?P<secret>[^\s\"']{1,200})\1", ("redis-cli",)),
    (r"(?i:docker|podman|helm|buildah|skopeo|nerdctl|oras)\b[^\n]{0,40}?\blogin\b[^\n]{0,150}?[ \t]-p[ \t]+"
     r"([\"']?)(?!--?[A-Za-z][\w-]*(?:\s|$))(?P<secret>[^\s\"']{1,200})\1", ("login",)),
    (r"(?i:mongo|mongosh|mongodump|mongorestore|psexec|paexec)\b[^\n]{0,150}?[ \t]-p[ \t]+([\"']?)"
     r"(?P<secret>[^\s\"'-][^\s\"']{0,200})\1", ("mongo", "psexec", "paexec")),
    (r"(?i:/pass(?:word)?):(?P<secret>[^\s/]{1,200})", ("/pass",)),  # cmdkey /pass:..., runas
    (r"(?i:\bnet[ \t]+use)\b[^\n]{0,150}?/user:[^\s]{1,100}[ \t]+(?P<secret>[^\s/*][^\s]{0,200})", ("net use",)),
    (r"WIFI:[^\n]{0,200}?(?<=[:;])P:(?P<secret>(?:[^;\\\n]|\\.){1,200});", ("wifi:",)),  # Wi-Fi QR codes
    (r"(?i:wpa_passphrase)[ \t]+\S{1,64}[ \t]+([\"']?)(?P<secret>[^\s\"']{1,200})\1", ("wpa_passphrase",)),
    (r"\.login\([ \t]*(?:[\"'][^\"'\n]{0,100}[\"']|[\w.]{1,60})[ \t]*,[ \t]*([\"'])(?P<secret>[^\"'\n]{1,200})\1",
     (".login(",)),
    (r"(?i:ssh-keygen)\b[^\n]{0,100}?[ \t]-N[ \t]*([\"'])(?P<secret>[^\"'\n]{1,200})\1", ("ssh-keygen",)),
    (r"(?i:sqlcmd|bcp|osql)\b[^\n]{0,100}?[ \t]-P[ \t]*(?P<secret>[^\s'\"-][^\s'\"]{0,200})",
     ("sqlcmd", "bcp", "osql")),
    (r"(?i:\b(?:7z|7za|zip|unzip|rar|unrar))\b[^\n]{0,100}?[ \t]-[pP][ \t]*(?P<secret>[^\s'\"-][^\s'\"]{0,200})",
     ("zip", "7z", "rar")),
    (r"(?i:ldap\w{0,12})\b[^\n]{0,150}?[ \t]-w[ \t]+([\"']?)(?P<secret>[^\s\"']{1,200})\1", ("ldap",)),
    (r"(?i:xfreerdp|wlfreerdp)\b[^\n]{0,150}?[ \t]/p:(?P<secret>\S{1,200})", ("freerdp",)),
    (r"(?i:smbclient|rpcclient|smbmap)\b[^\n]{0,150}?[ \t](?:-U|--user)[ \t]+[^\s%]{1,64}%(?P<secret>\S{1,200})",
     ("-u",)),
    (r"(?i:\bpassword)[ \t]+(['\"])(?P<secret>[^'\"\n]{1,200})\1", ("password",)),
    (r"(?i:auth)[ \t]*=[ \t]*\([ \t]*(['\"])[^'\"\n]{0,100}\1[ \t]*,[ \t]*(['\"])(?P<secret>[^'\"\n]{4,200})\2",
     ("auth",)),
    (r"(?i:basicauth)\([ \t]*(['\"])[^'\"\n]{0,100}\1[ \t]*,[ \t]*(['\"])(?P<secret>[^'\"\n]{1,200})\2",
     ("basicauth",)),
    (r"(?i:convertto-securestring)[ \t]+(?:-string[ \t]+)?(['\"])(?P<secret>[^'\"\n]{1,200})\1", ("securestring",)),
    (r"sshpass[ \t]+-p[ \t]*(['\"]?)(?P<secret>[^\s'\"]{1,200})\1", ("sshpass",)),
    (r"(?i:\bnet[ \t]+user)[ \t]+\S{1,64}[ \t]+(?!\*[ \t])(?P<secret>[^\s/]\S{0,200})[ \t]+/add", ("net user",)),
    (r"htpasswd[ \t]+-[a-zA-Z]*b[a-zA-Z]*[ \t]+(?:-\w+[ \t]+)*\S{1,200}[ \t]+\S{1,64}[ \t]+(?P<secret>\S{1,200})",
     ("htpasswd",)),
    # <password>...</password>, <apiKey>...</apiKey>
    (r"<(?P<tag>[\w:.-]{0,40}(?i:password|passwd|pwd|secret|token|apikey|api_key|accesskey|privatekey))>"
     r"(?P<secret>[^<\n]{1,300})</(?P=tag)>", ("</",)),
    # .pgpass: host:port:database:user:password
    (r"(?m)^[\w.*-]{1,100}:(?:[0-9]{1,5}|\*):[\w*.-]{1,100}:[\w*.@-]{1,100}:(?P<secret>\S{1,200})$", (":",)),
    # --db-password value, -storepass value, --api-key value (not --password-stdin)
    (r"(?<![\w-])--?[\w-]{0,30}?(?i:password|passwd|passphrase|pass|pwd|secret|token|api-key|apikey|pin)[ \t]+"
     r"[\"']?(?P<secret>[^\s'\"-][^\s'\"]{0,200})", ("pass", "pwd", "secret", "token", "key")),
    # mysql -u root -pSECRET
    (r"(?i:mysql(?:dump|admin)?)\b[^\n]{0,100}?[ \t]-p(?P<secret>[^\s'\"-][^\s'\"]{0,200})", ("mysql",)),
)

# -- prose: "password hunter2", "my password is ...", "Passwort: ...", "use ... as the password"
_PW_WORDS = (
    r"passwords?|passwort|passwd|passcode|passphrase|pass|pw|pwd|kennwort|mot de passe|mdp|contrase[ñn]a|senha"
    r"|wachtwoord|l[öo]senord|salasana|has[łl]o|parola|parolă|[şs]ifre|пароль|pin code|p/w|heslo|jelsz[óo]"
    r"|passord|adgangskode|lozinka|parool|slapta[žz]odis"
)
# CJK words have no word boundaries: 我的密码是..., パスワード：...
_PW_WORD_RE = re.compile(rf"(?<![\w])(?<!--)(?:{_PW_WORDS})(?![\w-])|密码|密碼|パスワード|비밀번호", re.IGNORECASE)
# optional "for the PDF", "to the shared drive", "of the router" between the word and the separator
_PW_QUALIFIER_RE = re.compile(
    r"[ \t]+(?:for|of|on|to|in|at|from|with|f[üu]r|de|du|pour|para|do|da)[ \t]+(?:(?:the|my|your|our|this|that|le|la"
    r"|les|das|die"
    r"|der|den|el|o|a)[ \t]+)?[\w.@'-]{1,40}(?:[ \t]+[\w.@'-]{1,40}){0,2}"
    r"(?=[ \t]*:|[ \t]+=|[ \t]+(?:is|was|ist|est|es|é|lautet)\b)",
    re.IGNORECASE,
)
_PW_SEPARATOR_RE = re.compile(
    r"[ \t]*(?:\([^()\n]{1,30}\)[ \t]*)?"
    r"(?:(?P<colon>:|=|：|\|)|(?P<arrow>->|→|[-–—](?=[ \t]))|(?P<comma>,)(?=[ \t])|(?P<cjk>是|は)"
    r"|[ \t]+(?P<verb>is|was|is now|will be|has been changed to|lautet|ist|est|es|é|changed to|set to|to)\b)"
    r"(?:[ \t]*:)?[ \t]*",
    re.IGNORECASE,
)
# words between the verb and the value: "was changed to", "is still", "has been reset to"
_PW_FILLER_RE = re.compile(
    r"(?:(?:now|still|just|actually|simply|been|changed|reset|set|updated|to|currently)[ \t]+){1,4}", re.IGNORECASE)
# the value before the word: "Sunflower42 is the wifi password", "X is my password"
_VALUE_FIRST_RE = re.compile(
    r"(?<![\w-])[\"'“]?(?P<secret>[^\s\"'”]{4,200}?)[\"'”]?[ \t]+(?:is|was|'s)[ \t]+(?:the|my|our|your|his|her)"
    r"[ \t]+(?:[\w-]+[ \t]+){0,2}(?:password|passphrase|passcode|pw|pin)\b",
    re.IGNORECASE,
)
_PW_VALUE_RE = re.compile(r"[\"'“‘«](?P<q>[^\"'”’»\n]{1,200})[\"'”’»]|(?P<u>[^\s\"'“”‘’«»<>]{1,200})")
_KV_WORDS = frozenset({"password", "passwords", "passwd", "pwd", "pass", "passphrase", "passcode"})
_STOP_TEXT = """a an the my your our his her their its this that these those it is was be to for of on in at by with
    and or not no yes none null true false same new old wrong incorrect correct right strong weak long short
    expired invalid valid reset required optional hidden secret empty blank set unset changed saved stored
    written here there on-file manager field hint length policy protected please again too very still also
    just now never always sent shown below above attached enabled disabled ok okay fine good bad different"""
_STOP_WORDS = frozenset(_STOP_TEXT.split())
_USE_AS_RE = re.compile(
    r"(?<![\w-])(?:use|try|enter|type|set|pick|chose|choose)[ \t]+[\"'“]?(?P<secret>[^\s\"'”]{4,200}?)[\"'”]?"
    r"[ \t]+(?:as|for)[ \t]+(?:the|my|your|a)?[ \t]*(?:[\w-]+[ \t]+){0,2}(?:password|passphrase|passcode|pw)\b",
    re.IGNORECASE,
)
_LOGIN_SLASH_RE = re.compile(
    r"(?<![\w-])(?:login|user(?:name)?|account|creds?|credentials)(?:[ \t]+is|:)?[ \t]+[\w.@-]{1,64}[ \t]*/[ \t]*"
    r"(?P<secret>[^\s/]{4,200})",
    re.IGNORECASE,
)
# user:password in a line that speaks of credentials or a login
_USER_PASS_RE = re.compile(r"(?<![\w/@:.-])[A-Za-z][\w.-]{1,30}:(?P<secret>[^\s:/@\[\]]{4,64})(?![\w@/:])")
_CRED_LINE_RE = re.compile(r"credential|\bcreds?\b|\blogin\b|\bpassword|passwd|\buser:pass", re.IGNORECASE)
# user:password@host without a scheme: ssh-copy-id admin:pw@host, mysql u:p@tcp(db:3306)
_USER_PASS_AT_RE = re.compile(
    r"(?<![\w/:.@-])[A-Za-z][\w.+-]{0,63}:(?P<secret>[^\s:/@]{3,200})@(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+|tcp\(|localhost)")
# "password (Harbor#9)"
_PAREN_VALUE_RE = re.compile(r"(?<![\w-])(?i:password|passwort|passcode|pw|pwd)[ \t]*\((?P<secret>[^\s()]{4,100})\)")


_PLACEHOLDER_VALUE_RE = re.compile(
    r"<[^<>]*>|\$\{[^}]*\}|\$[A-Za-z_]\w*|\$\([^)]*\)?|\{\{.*\}\}|\{[\w.]*\}|%[A-Za-z_]\w*%|%(?:\(\w*\))?[sd]"
    r"|\[REDACTED:[a-z_]+\]|\[[A-Z_ ]+\]|\(\w+\)"
)


def looks_placeholder(value: str) -> bool:
    return (_PLACEHOLDER_VALUE_RE.fullmatch(value) is not None or is_filler(value)
            or is_placeholder_words(value))


_BLANK_RE = re.compile(r"[ \t]*:?[ \t]*\r?\n[ \t]*|[ \t]+")


def password_like(value: str) -> bool:
    """A value that could only be a password: digits, symbols or mixed case in it, or a hyphenated passphrase."""
    if len(value) < 4 or value.lower() in _STOP_WORDS or is_filler(value):
        return False
    if looks_placeholder(value):
        return False
    if any(c.isdigit() for c in value):
        if re.fullmatch(r"[0-9.,:/-]+", value) and not value.isdigit():
            return False  # a number, a date, a version
        return any(c.isalpha() for c in value) or len(value) >= 6
    if any(not c.isalnum() and c not in "-_." for c in value):
        return True
    rest = value[1:]
    if any(c.isupper() for c in rest) and any(c.islower() for c in value):
        return True
    parts = value.split("-")
    return len(parts) >= 3 and all(p.isalpha() and len(p) >= 3 for p in parts)


def _trim_value(text: str, start: int, end: int) -> tuple[int, int]:
    while end > start and text[end - 1] in ".,;:)]}!?" and not (text[end - 1] in "!?" and end - start > 4
                                                                 and text[end - 2].isalnum() and end == len(text)):
        end -= 1
    return start, end


# Markdown and HTML around a label or a value: **Password:** x, `x`, <b>Password:</b> x
_MARKUP_RE = re.compile(r"(?:[*_`]{1,3}|</?[A-Za-z][A-Za-z0-9]{0,10}>)")
_MARKUP_GAP_RE = re.compile(r"(?:[ \t]*(?:[*_`]{1,3}|</?[A-Za-z][A-Za-z0-9]{0,10}>))+[ \t]*")


def prose_password_spans(text: str) -> list[Span]:
    spans: list[Span] = []
    for word in _PW_WORD_RE.finditer(text):
        pos = word.end()
        markup_before = _MARKUP_GAP_RE.match(text, pos)
        if markup_before is not None and text.startswith((":", " :", "="), markup_before.end()):
            pos = markup_before.end()  # **Password**: x
        qualifier = _PW_QUALIFIER_RE.match(text, pos)
        if qualifier is not None:
            pos = qualifier.end()
        sep = _PW_SEPARATOR_RE.match(text, pos)
        direct = sep is None or sep.end() == pos
        if sep is not None and sep.end() > pos:
            pos = sep.end()
        elif qualifier is not None:
            continue
        else:
            ws = _BLANK_RE.match(text, pos)
            if ws is None:
                continue
            if "\n" in ws.group():  # "Password" as a label, the value alone on the next line
                line_end = text.find("\n", ws.end(), ws.end() + 200)
                line = text[ws.end() : ws.end() + 200 if line_end < 0 else line_end].strip()
                if " " in line or not password_like(line):
                    continue
            pos = ws.end()
        colon = sep is not None and sep.group("colon") is not None
        markup_after = _MARKUP_GAP_RE.match(text, pos) if colon else None
        if markup_after is not None:  # **Password:** x, password: `x`, <b>Password:</b> x
            pos = markup_after.end()
        next_line = False
        if colon and text.startswith(("\n", "\r\n"), pos):  # "Password:" as a label, the value on the next line
            blank = _BLANK_RE.match(text, pos)
            pos = blank.end() if blank is not None else pos
            next_line = True
        elif (colon and qualifier is None and word.group().lower() in _KV_WORDS and "(" not in sep.group()
                and sep.group("colon") in ":=" and markup_after is None and markup_before is None):
            continue  # "password: x", "password=x": the key=value rule's, which knows code from values
        if sep is not None and sep.group("verb"):
            filler = _PW_FILLER_RE.match(text, pos)
            pos = filler.end() if filler is not None else pos
        value = _PW_VALUE_RE.match(text, pos)
        if value is None:
            continue
        closing = None if markup_after is None else _MARKUP_RE.search(text, pos, value.end())
        if closing is not None and value.group("q") is None:
            start, end = pos, closing.start()  # the value ends where its markup closes: `x`, **x**, <code>x</code>
            raw = text[start:end]
            if raw and raw.lower() not in _STOP_WORDS and not looks_placeholder(raw):
                spans.append((start, end))
            continue
        if value.group("q") is not None:
            start, end = value.span("q")
            raw = value.group("q")
            ok = bool(raw.strip()) and raw.lower() not in _STOP_WORDS and not looks_placeholder(raw)
            if ok and (direct or (sep is not None and sep.group("verb"))):
                ok = password_like(raw) or len(raw) >= 6
        else:
            start, end = _trim_value(text, *value.span("u"))
            opened = text[max(0, word.start() - 3) : word.start()]
            for mark in ("**", "__", "`", "*", "_"):  # **Password reset**: the emphasis that opened closes here
                if opened.endswith(mark) and text.endswith(mark, start, end):
                    end -= len(mark)
                    break
            raw = text[start:end]
            if raw.startswith("[REDACTED"):
                continue
            colon = sep is not None and (sep.group("colon") or sep.group("arrow")) is not None
            ok = password_like(raw) or (colon and len(raw) >= 4 and raw.lower() not in _STOP_WORDS
                                        and not looks_placeholder(raw))
            if (direct or next_line) and ok:
                ok = password_like(raw) and len(raw) >= (4 if next_line else 6)
            if sep is not None and sep.group("comma"):  # "his password, Granite#8, is weak" (not code: `password,`)
                core = raw.rstrip("!?.")
                ok = password_like(core) and any(not c.isalpha() for c in core) and not core.isdigit()
        if ok and end > start:
            spans.append((start, end))
    for pattern in (_USE_AS_RE, _LOGIN_SLASH_RE, _VALUE_FIRST_RE, _PAREN_VALUE_RE, _USER_PASS_AT_RE):
        for m in pattern.finditer(text):
            start, end = _trim_value(text, *m.span("secret"))
            if password_like(text[start:end]):
                spans.append((start, end))
    if ":" in text:
        for m in _USER_PASS_RE.finditer(text):
            line_start = max(text.rfind("\n", max(0, m.start() - 200), m.start()) + 1, m.start() - 200)
            line_end = text.find("\n", m.end(), m.end() + 200)
            line = text[line_start : min(len(text), m.end() + 200) if line_end < 0 else line_end]
            start, end = _trim_value(text, *m.span("secret"))
            if _CRED_LINE_RE.search(line) and password_like(text[start:end]) and not text[start:end].isdigit():
                spans.append((start, end))
    return _merge(spans)


# ---------------------------------------------------------------------------------------------
# card numbers grouped with dots, double spaces or spaced dashes (spaces and dashes: redaction.py)

_CARD_GROUPED_RE = re.compile(
    r"(?<![\w.,/-])[2-6][0-9]{3}(?P<sep>\.|  |[ \t]-[ \t]|[ \t]\.[ \t])"
    r"(?:[0-9]{4}(?P=sep)[0-9]{4}(?P=sep)[0-9]{4}(?:(?P=sep)[0-9]{1,3})?|[0-9]{6}(?P=sep)[0-9]{4,5})"
    r"(?![\w]|[.,][0-9])"
)


def grouped_card_spans(text: str) -> list[Span]:
    spans: list[Span] = []
    for m in _CARD_GROUPED_RE.finditer(text):
        digits = "".join(c for c in m.group() if c.isdigit())
        if 13 <= len(digits) <= 19 and luhn_ok(digits):
            spans.append(m.span())
    return spans


# ---------------------------------------------------------------------------------------------
# national ids

_NINO_RE = re.compile(
    r"(?<![A-Za-z0-9])(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
    r"[ ]?[0-9]{2}[ ]?[0-9]{2}[ ]?[0-9]{2}[ ]?[A-D](?![A-Za-z0-9])"
)
_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"
_DNI_RE = re.compile(r"(?<![\w-])(?P<nie>[XYZ])?(?P<num>[0-9]{7,8})[ -]?(?P<letter>[A-Z])(?![\w])")
_NIR_RE = re.compile(
    r"(?<![\w])[12][ ]?[0-9]{2}[ ]?(?:0[1-9]|1[0-2]|[2-9][0-9])[ ]?(?:[0-9]{2}|2[AB])[ ]?[0-9]{3}[ ]?[0-9]{3}"
    r"[ ]?[0-9]{2}(?![\w])"
)
_CF_RE = re.compile(r"(?<![A-Za-z0-9])[A-Z]{6}[0-9LMNPQRSTUV]{2}[A-EHLMPR-T][0-9LMNPQRSTUV]{2}[A-Z]"
                    r"[0-9LMNPQRSTUV]{3}[A-Z](?![A-Za-z0-9])")
_CF_ODD = [1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23]
_NINE_DIGITS_RE = re.compile(r"(?<![\w.,/-])[0-9]{3}([ -]?)[0-9]{3}\1[0-9]{3}(?![\w]|[.,-][0-9])")
_TWELVE_DIGITS_RE = re.compile(r"(?<![\w.,/-])[2-9][0-9]{3}([ -]?)[0-9]{4}\1[0-9]{4}(?![\w]|[.,-][0-9])")
_SSN_LOOSE_RE = re.compile(r"(?<![\w.,/-])[0-9]{3}([ ]?)[0-9]{2}\1[0-9]{4}(?![\w]|[.,-][0-9])")

_SIN_CONTEXT = re.compile(r"\bSIN\b|social insurance|num[ée]ro d.assurance sociale|\bNAS\b", re.IGNORECASE)
_BSN_CONTEXT = re.compile(r"\bBSN\b|burgerservicenummer|citizen service number|sofi-?nummer", re.IGNORECASE)
_AADHAAR_CONTEXT = re.compile(r"aadhaa?r|आधार|\bUIDAI\b|\bUID\b", re.IGNORECASE)
_SSN_CONTEXT = re.compile(r"\bSSN\b|social security|\bSS#|\bSSA\b", re.IGNORECASE)
_CONTEXT_BEFORE = 60


def _has_context(text: str, start: int, pattern: re.Pattern[str]) -> bool:
    return pattern.search(text, max(0, start - _CONTEXT_BEFORE), start) is not None


def _verhoeff_ok(number: str) -> bool:
    d = ((0, 1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 2, 3, 4, 0, 6, 7, 8, 9, 5), (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
         (3, 4, 0, 1, 2, 8, 9, 5, 6, 7), (4, 0, 1, 2, 3, 9, 5, 6, 7, 8), (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
         (6, 5, 9, 8, 7, 1, 0, 4, 3, 2), (7, 6, 5, 9, 8, 2, 1, 0, 4, 3), (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
         (9, 8, 7, 6, 5, 4, 3, 2, 1, 0))
    p = ((0, 1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 5, 7, 6, 2, 8, 3, 0, 9, 4), (5, 8, 0, 3, 7, 9, 6, 1, 4, 2),
         (8, 9, 1, 6, 0, 4, 3, 5, 2, 7), (9, 4, 5, 3, 1, 2, 6, 8, 7, 0), (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
         (2, 7, 9, 3, 8, 0, 6, 4, 1, 5), (7, 0, 4, 6, 9, 1, 3, 2, 5, 8))
    c = 0
    for i, ch in enumerate(reversed(number)):
        c = d[c][p[i % 8][ord(ch) - 48]]
    return c == 0


def _bsn_ok(number: str) -> bool:
    digits = [ord(c) - 48 for c in number]
    total = sum(x * w for x, w in zip(digits[:8], range(9, 1, -1), strict=True)) - digits[8]
    return total % 11 == 0 and digits[0] != 0


def _cf_ok(code: str) -> bool:
    total = 0
    for i, ch in enumerate(code[:15]):
        if i % 2 == 0:
            total += _CF_ODD[int(ch)] if ch.isdigit() else _CF_ODD[ord(ch) - 65]
        else:
            total += int(ch) if ch.isdigit() else ord(ch) - 65
    return code[15] == chr(65 + total % 26)


def _ssn_parts_ok(digits: str) -> bool:
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return not (area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000")


def national_id_spans(text: str) -> list[Span]:
    spans: list[Span] = []
    for m in _NINO_RE.finditer(text):
        spans.append(m.span())
    for m in _DNI_RE.finditer(text):
        num = m.group("num")
        nie = m.group("nie")
        if nie is not None:
            if len(num) != 7:
                continue
            value = int(str("XYZ".index(nie)) + num)
        elif len(num) == 8:
            value = int(num)
        else:
            continue
        if _DNI_LETTERS[value % 23] == m.group("letter"):
            spans.append(m.span())
    for m in _NIR_RE.finditer(text):
        digits = m.group().replace(" ", "")
        if len(digits) != 15:
            continue
        body = digits[:13].replace("2A", "19").replace("2B", "18")
        if body.isdigit() and 97 - int(body) % 97 == int(digits[13:]):
            spans.append(m.span())
    for m in _CF_RE.finditer(text):
        if _cf_ok(m.group()):
            spans.append(m.span())
    for m in _NINE_DIGITS_RE.finditer(text):
        digits = m.group().replace(" ", "").replace("-", "")
        if (_has_context(text, m.start(), _SIN_CONTEXT) and luhn_ok(digits)) or (
            _has_context(text, m.start(), _BSN_CONTEXT) and _bsn_ok(digits)
        ):
            spans.append(m.span())
    for m in _TWELVE_DIGITS_RE.finditer(text):
        digits = m.group().replace(" ", "").replace("-", "")
        if _has_context(text, m.start(), _AADHAAR_CONTEXT) and _verhoeff_ok(digits):
            spans.append(m.span())
    for m in _SSN_LOOSE_RE.finditer(text):
        digits = m.group().replace(" ", "")
        if _has_context(text, m.start(), _SSN_CONTEXT) and _ssn_parts_ok(digits):
            spans.append(m.span())
    return _merge(spans)


# ---------------------------------------------------------------------------------------------
# contacts

_EMAIL_RE = re.compile(
    r"(?<![\w.%+@/-])[A-Za-z0-9_][A-Za-z0-9._%+-]{0,63}(?:@|%40)"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w@-]|\.[A-Za-z0-9])"
)
# "alice [at] example [dot] com", "alice(at)uni-bonn.de"
_EMAIL_OBFUSCATED_RE = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9_][A-Za-z0-9._+-]{0,63}[ \t]*[\[(\{][ \t]*(?i:at)[ \t]*[\])\}][ \t]*"
    r"[A-Za-z0-9-]{1,63}(?:(?:[ \t]*[\[(\{][ \t]*(?i:dot)[ \t]*[\])\}][ \t]*|\.)[A-Za-z0-9-]{1,63}){1,4}"
)
_SCP_LOCALS = frozenset({"git", "hg", "svn"})


def email_spans(text: str) -> list[Span]:
    spans: list[Span] = []
    for m in _EMAIL_RE.finditer(text):
        local = m.group().partition("@")[0]
        after = text[m.end() : m.end() + 1]
        if local.lower() in _SCP_LOCALS and after == ":":
            continue  # git@github.com:org/repo.git
        spans.append(m.span())
    spans.extend(m.span() for m in _EMAIL_OBFUSCATED_RE.finditer(text))
    return _merge(spans)


# International numbers: +CC then groups; national numbers with a trunk 0; North American numbers.
_PHONE_INTL_RE = re.compile(
    r"(?<![\w+])\+[1-9][0-9]{0,2}(?:[ .-]?\(0\))?(?:[ .-]?\(?[0-9]{1,5}\)?){1,6}(?![\w]|[.,][0-9])"
)
_PHONE_NANP_RE = re.compile(
    r"(?<![\w.,/-])(?<![0-9][ .-])(?:\([2-9][0-9]{2}\)[ ]?|[2-9][0-9]{2}([-.]))[2-9][0-9]{2}(?(1)\1|[-. ])[0-9]{4}"
    r"(?![\w]|[ .,-][0-9])"
)
_PHONE_TRUNK_RE = re.compile(
    r"(?<![\w.,/+-])(?<![0-9][ .-])0[1-9][0-9]{0,3}(?P<sep>[ -])[0-9]{2,6}(?:(?P=sep)[0-9]{2,4}){0,3}"
    r"(?![\w]|[ .,:-][0-9])"
)
_PHONE_CONTEXT_RE = re.compile(
    r"(?<![\w])(?:phone|tel|telephone|t[ée]l[ée]phone|telefon|tel[ée]fono|mobile?|mob|cell(?:ular|ulare)?"
    r"|handy|fax|whatsapp|sms|call(?:ed)?|ring|text me|hp|ph|portable|celular|bel me|電話)(?![\w])[^\n\d+(]{0,20}",
    re.IGNORECASE,
)
_PHONE_LOOSE_RE = re.compile(r"\(?[0-9][0-9 ().-]{5,20}[0-9](?![\w]|[.,][0-9])")


def _digit_count(value: str) -> int:
    return sum(c.isdigit() for c in value)


def phone_spans(text: str) -> list[Span]:
    spans: list[Span] = []
    for m in _PHONE_INTL_RE.finditer(text):
        if 8 <= _digit_count(m.group()) <= 15:
            spans.append(m.span())
    for m in _PHONE_NANP_RE.finditer(text):
        spans.append(m.span())
    for m in _PHONE_TRUNK_RE.finditer(text):
        if 10 <= _digit_count(m.group()) <= 12:  # 9 digits only after a word that says phone (below)
            spans.append(m.span())
    for m in _PHONE_CONTEXT_RE.finditer(text):
        loose = _PHONE_LOOSE_RE.match(text, m.end())
        if loose is not None and 7 <= _digit_count(loose.group()) <= 15:
            spans.append(loose.span())
    return _merge(spans)


# ---------------------------------------------------------------------------------------------


def _merge(spans: list[Span]) -> list[Span]:
    """Sorted, non-overlapping spans (overlapping or touching ones joined)."""
    merged: list[Span] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged

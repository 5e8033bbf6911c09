"""Secret redaction: runs on every observation before anything is stored.

`Redactor.redact(text)` replaces secrets with `[REDACTED:<kind>]` tokens and reports how many it
replaced and of which kinds. The kinds, applied in this order:

* ``private_key``  PEM private key blocks (RSA, EC, OPENSSH, ENCRYPTED, PGP, ...); a BEGIN line
  without a matching END line is redacted to the end of the text. Also PuTTY private lines, DER keys
  in base64, a JWK's private members, age secret keys, wallet recovery phrases.
* ``jwt``          JSON Web Tokens (``eyJ...`` header, payload and signature segments; JWE's five).
* ``cloud_credential``  an AWS access key id with its secret access key next to it (more below).
* ``api_key``      well-known token formats (OpenAI, Anthropic, GitHub, GitLab, Slack, Stripe, AWS,
  Google, Hugging Face, npm, and the formats of `redaction_rules.KEY_SPECS`), the token in
  ``Bearer ...`` / ``Authorization: ...`` headers, a random-looking literal passed to a call.
* ``password``     the value of ``key=value`` / ``key: value`` pairs whose key names a secret
  (password, passwd, pwd, pass, secret, token, api_key, access_token, client_secret, auth, psk, ...;
  also ``DB_PASSWORD``, ``clientSecret``, ``AWS_SECRET_ACCESS_KEY``; any other ``..._key`` when its value
  looks random), the password in URL userinfo (``scheme://user:password@host``), ``curl -u user:password``,
  ``--password value`` and the config and prose forms of `redaction_rules` ("password hunter2",
  "my password is ...", ``IDENTIFIED BY '...'``, ``<password>...</password>``, ...).
  The key is kept; only the value is replaced. Values that are clearly code rather than secrets
  are kept: type annotations (``password: str``), references (``$DB_PASSWORD``, ``${X}``,
  ``os.environ[...]``, ``<your-token>``), calls (``get_token()``), identifiers (``token=token``,
  ``password = hashed_password``), literals (``None``, ``true``) and placeholders (``YOUR_TOKEN_HERE``,
  ``ghp_xxxx...``, ``%s``, ``{client_secret}``, ``!vault``).
* ``cloud_credential``  bare AWS secret access keys (40 characters with a ``/`` or ``+``).
* ``secret``       a random-looking value shortly after words that name a secret ("secret key",
  "private key", "token", "credentials", "<provider> key", ...).
* ``card_number``  13-19 digits (optionally grouped by spaces, dashes, dots) that pass the Luhn
  check and start with 2-6 (the major card networks).
* ``iban``         IBANs (spaced, dashed, compact, any case) validated by country length and the ISO 7064
  mod-97 check.
* ``ssn``          US social security numbers ``ddd-dd-dddd`` with a valid area, group and serial.
* ``national_id``  UK National Insurance, Canadian SIN, Spanish DNI / NIE, French NIR, Indian Aadhaar,
  Dutch BSN, Italian codice fiscale (each by its check), US SSNs without dashes next to the word.
* ``email``, ``phone``  contacts, unless ``contacts=False`` (GUM_REDACT_CONTACTS).
* ``custom``       each user pattern (``GUM_REDACT_PATTERNS``); a group named ``secret`` limits the
  replacement to that group.

Text already inside a ``[REDACTED:...]`` token is never matched again, and the rules run again
(up to a few rounds) while they still find something, so redaction is idempotent.
The built-in rules are built once, on first use (`_builtin`), not on import: a process that never
redacts (or redacts later) does not wait for their regular expressions to compile. A `Redactor`
compiles its custom patterns when it is made, so an invalid one is reported at once. The built-in
patterns avoid catastrophic backtracking (possessive quantifiers, bounded repetitions, start-of-word
lookbehinds).

How well it works is measured, not hoped for: `bench/redaction.py` scores it on the labelled corpus
`tests/fixtures/redaction_corpus.jsonl` (recall per class and false positives, on a tuning half and a
held-out half), and `tests/test_redaction_corpus.py` holds it to the goals on the held-out half.
`REDACTOR_VERSION` says when stored data must be redacted again (`gum_mcp/store/reredact.py`).
"""

from __future__ import annotations

import bisect
import functools
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported, and bound here, with the built-in rules (`_builtin`): its patterns compile on import
    from gum_mcp.store import redaction_rules as more

__all__ = ["REDACTOR_VERSION", "RedactionResult", "Redactor", "redact"]

#: Bumped whenever the built-in rules find more: stored data redacted by an older version is redacted again
#: (gum_mcp/store/reredact.py). Version 1 had no contacts, national ids other than SSNs, prose passwords or
#: context rules.
REDACTOR_VERSION = 2


@dataclass(frozen=True)
class RedactionResult:
    text: str  # redacted text
    count: int  # number of replacements
    kinds: tuple[str, ...]  # sorted unique kinds found, e.g. ("api_key", "card_number")


# A finder takes the text and the bounds (start, end) of a stretch of it free of redaction tokens,
# and returns sorted, non-overlapping (start, end) spans inside those bounds to replace.
_Finder = Callable[[str, int, int], list[tuple[int, int]]]
_SliceFinder = Callable[[str], list[tuple[int, int]]]

_TOKEN_RE = re.compile(r"\[REDACTED:[a-z_]+\]")
_TOKEN_MARK = "[REDACTED:"


@dataclass(frozen=True)
class _Rule:
    kind: str
    find: _Finder
    # Cheap prefilter: the rule runs only if one of these occurs in the lower-cased input.
    hints: tuple[str, ...] | None = None


def _regex_finder(
    pattern: re.Pattern[str],
    validate: Callable[[str], bool] | None = None,
) -> _Finder:
    """Spans of `pattern` (its `secret` group if it has one), optionally filtered by `validate`."""
    has_secret = "secret" in pattern.groupindex

    def find(text: str, begin: int, stop: int) -> list[tuple[int, int]]:
        spans: list[tuple[int, int]] = []
        for m in pattern.finditer(text, begin, stop):
            start, end = m.span("secret") if has_secret else m.span()
            if start < 0 or end <= start:
                continue
            if validate is not None and not validate(text[start:end]):
                continue
            spans.append((start, end))
        return spans

    return find


def _sliced(find: _SliceFinder) -> _Finder:
    """A finder from one that looks at the stretch of text on its own."""

    def find_in(text: str, begin: int, stop: int) -> list[tuple[int, int]]:
        spans = find(text[begin:stop])
        return [(start + begin, end + begin) for start, end in spans] if begin else spans

    return find_in


def _anchored_finder(
    anchor: str,
    pattern: re.Pattern[str],
    validate: Callable[[str], bool] | None = None,
) -> _Finder:
    """Like `_regex_finder`, for a pattern that starts with the lower-case literal `anchor` in any
    case: much faster than a case-insensitive search, which tries the pattern at every position."""
    fallback = _regex_finder(pattern, validate)
    has_secret = "secret" in pattern.groupindex

    def find(text: str) -> list[tuple[int, int]]:
        lowered = text.lower()
        if len(lowered) != len(text):
            return fallback(text, 0, len(text))
        spans: list[tuple[int, int]] = []
        pos = 0
        while (idx := lowered.find(anchor, pos)) >= 0:
            m = pattern.match(text, idx)
            if m is None:
                pos = idx + 1
                continue
            pos = max(m.end(), idx + 1)
            start, end = m.span("secret") if has_secret else m.span()
            if start < 0 or end <= start or (validate is not None and not validate(text[start:end])):
                continue
            spans.append((start, end))
        return spans

    return _sliced(find)


# ---------------------------------------------------------------------------------------------
# private keys and JWTs

_PRIVATE_KEY_RE = re.compile(
    r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
    r".*?"
    r"(?:-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----|\Z)",
    re.DOTALL,
)

# JWS (three parts, the signature may be empty) and JWE (five parts, the key part may be empty)
_JWT_RE = re.compile(
    r"eyJ(?<![\w-]eyJ)[A-Za-z0-9_-]{10,}+(?:\.[A-Za-z0-9_-]{4,}+\.[A-Za-z0-9_-]*+|\.[A-Za-z0-9_-]*+"
    r"\.[A-Za-z0-9_-]{4,}+\.[A-Za-z0-9_-]{4,}+\.[A-Za-z0-9_-]{4,}+)(?:\.[A-Za-z0-9_-]{4,}+\.[A-Za-z0-9_-]{4,}+)?"
)


# ---------------------------------------------------------------------------------------------
# API keys


def _has_digit_and_letter(value: str) -> bool:
    return any(c.isdigit() for c in value) and any(c.isalpha() for c in value)


_LONG_RUN_RE = re.compile(r"[A-Za-z0-9_]{16}")


def _looks_like_sk_key(value: str) -> bool:
    # Real `sk-` keys are long random strings; "sk-learn-0-24-release-notes" is not.
    body = value[3:]
    return _has_digit_and_letter(body) and _LONG_RUN_RE.search(body) is not None


# (pattern, validator, hints) for well-known token formats. Each pattern starts
# with a literal and checks the start-of-word condition with a lookbehind right after it, so the
# regex engine can skip ahead to the literal instead of trying every position.
_API_KEY_SPECS: tuple[tuple[str, Callable[[str], bool] | None, tuple[str, ...]], ...] = (
    # OpenAI (sk-, sk-proj-, sk-svcacct-, sk-admin-) and Anthropic (sk-ant-)
    (r"sk-(?<![\w-]sk-)[A-Za-z0-9_-]{20,}+", _looks_like_sk_key, ("sk-",)),
    # GitHub classic and fine-grained tokens
    (r"gh[pousr]_(?<![\w-]gh[pousr]_)[A-Za-z0-9]{36,255}+", None, ("ghp_", "gho_", "ghu_", "ghs_", "ghr_")),
    (r"github_pat_(?<![\w-]github_pat_)[A-Za-z0-9_]{22,255}+", None, ("github_pat_",)),
    # GitLab personal access token
    (r"glpat-(?<![\w-]glpat-)[A-Za-z0-9_-]{20,}+", None, ("glpat-",)),
    # Slack tokens and app-level tokens
    (r"xox[baprs]-(?<![\w-]xox[baprs]-)[A-Za-z0-9-]{10,}+", _has_digit_and_letter, ("xox",)),
    (r"xapp-(?<![\w-]xapp-)[A-Za-z0-9-]{10,}+", _has_digit_and_letter, ("xapp-",)),
    # Stripe secret, restricted and publishable keys
    (
        r"[spr]k_(?:live|test)_(?<![\w-][spr]k_(?:live|test)_)[A-Za-z0-9]{16,}+",
        None,
        ("k_live_", "k_test_"),
    ),
    # AWS access key id
    (r"A[KS]IA(?<![A-Za-z0-9]A[KS]IA)[A-Z0-9]{16}(?![A-Za-z0-9])", None, ("akia", "asia")),
    # Google API key
    (r"AIza(?<![\w-]AIza)[A-Za-z0-9_-]{35}(?![\w-])", None, ("aiza",)),
    # Google OAuth access token
    (r"ya29\.(?<![\w-]ya29\.)[A-Za-z0-9_-]{20,}+", None, ("ya29.",)),
    # Hugging Face
    (r"hf_(?<![\w-]hf_)[A-Za-z0-9]{30,}+", None, ("hf_",)),
    # npm
    (r"npm_(?<![\w-]npm_)[A-Za-z0-9]{36}(?![A-Za-z0-9])", None, ("npm_",)),
)

# Header forms, after the specific formats: (lower-case anchor, pattern starting with it, validator).
_HEADER_SPECS: tuple[tuple[str, str, Callable[[str], bool] | None], ...] = (
    # Authorization header: keep the scheme, redact the credentials
    (
        "authorization",
        r"(?<![\w-])(?i:authorization)[\"']?[ \t]*[:=][ \t]*[\"']?"
        r"(?i:bearer|basic|token|bot|apikey|ssws|key|digest)[ \t]+"
        r"(?P<secret>[A-Za-z0-9._~+/=-]{4,}+)",
        None,
    ),
    # A bare "Bearer <token>" (e.g. in a header dump); the token must look random
    ("bearer", r"(?<![\w-])(?i:bearer)[ \t]+(?P<secret>[A-Za-z0-9._~+/-]{16,}+=*)", _has_digit_and_letter),
)


# ---------------------------------------------------------------------------------------------
# passwords

# `key = value`, `key: value`, `"key": "value"`, `'key' => 'value'`, `--key=value`, `env["KEY"] = value`:
# found from the keyword inside the key, which is much faster than trying every word as a key.
_KV_KEYWORD_RE = re.compile(r"pass|pwd|secret|token|key|auth|psk|appid")
_KV_KEYWORD_RE_I = re.compile(r"pass|pwd|secret|token|key|auth|psk|appid", re.IGNORECASE)
# The key's tail after the keyword, then the separator (not `==`, `://`); the key's head is
# matched on the reversed text.
_KV_AFTER_KEY_RE = re.compile(r"(?P<tail>[\w.-]*+)(?P<q>[\"']?)\]?[ \t]*(?P<sep>:=|=>|=(?!=)|:(?!//|:))[ \t]*")
_KV_KEY_HEAD_RE = re.compile(r"[\w.-]{0,65}+")
# An unquoted value ends at the next "&name=" (`?user=a&password=b&next=c`, `access_token=x&expires=3600`), but a
# password may have a "&" in it: `Tr0ub4dor&3xyzzy`.
_KV_VALUE_RE = re.compile(
    r"\"(?P<dq>[^\"\n]*+)\"|'(?P<sq>[^'\n]*+)'|(?P<uq>(?:[^\s'\"`,;&]|&(?![A-Za-z_][\w.\[\]-]{1,63}=))++)"
)
_KEY_PART_RE = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+")
_MAX_KEY_CHARS = 64
_DOC_FIELD_PREFIXES = (":param ", ":type ", "@param ", ":ivar ", ":cvar ", ":raises ", ":returns ")

_SECRET_KEY_WORDS = frozenset(
    {"password", "passwd", "pwd", "pass", "secret", "token", "apikey", "auth", "passphrase", "psk", "passcode"}
)
_SECRET_KEY_SUFFIXES = ("password", "passwd", "secret", "token", "apikey", "passphrase")
_KEY_QUALIFIERS = frozenset(
    {"api", "secret", "private", "access", "auth", "signing", "encryption", "master", "storage", "account",
     "client", "app", "service", "session", "ssh", "deploy", "bot", "webhook", "shared", "subscription",
     "license", "root", "wallet", "consumer"}
)

# Values that are not secrets themselves but literals, references or code:
_NON_SECRET_VALUES = frozenset(
    {"none", "null", "nil", "true", "false", "undefined", "required", "optional"}
    | {"str", "string", "bytes", "int", "float", "bool", "dict", "list", "tuple", "any", "object"}
    | {"raise", "return", "yield", "await", "lambda", "not", "continue", "break", "del", "print"}
)
# ... placeholders, quoted or not: $DB_PASSWORD, ${DB_PASSWORD}, $(cat f), %PASSWORD%, {{ x }}, <token>, ****,
# printf and format fields (%s, %(password)s, {client_secret}, {0}), YAML tags (!vault, !secret name)
_PLACEHOLDER_RE = re.compile(
    r"\$[A-Z_][A-Z0-9_]*\Z|\$\{[^}]*\}\Z|\$\([a-z][\w./-]*\Z|\$\([^)]*\)\Z|%[A-Z_][A-Z0-9_]*%\Z|\{\{.*\}\}\Z|<[^<>]*>\Z|\*+\Z"
    r"|%(?:\([\w.]*\))?[-#0 +]?[0-9]*[sdrifx]\Z|\{[\w.\[\]]*(?:![rsa])?(?::[^{}]*)?\}\Z|![A-Za-z]{2,20}\Z"
)
# ... and, unquoted, code: os.environ[...], self.x, get_token(...), creds["token"]
_CODE_REFERENCE_RE = re.compile(
    r"(?:process\.env|os\.environ|os\.getenv|getenv|env|self|this|cls|settings|config|secrets|vars)[.\[(]"
    r"|[A-Za-z_][\w.]*\["  # a subscript
)
# A call: `get_token()`, `getpass.getpass(prompt=`; the name must be made of words (a password may have a
# "(" too: "W(Szmehd9KkV(", "rvvCUjaIusYX(0Wx59w)").
_CALL_RE = re.compile(r"(?P<name>[A-Za-z_][\w.]*)\([\w.=]*\)?")
# A type annotation (`password: str`, `token: Optional[str] = None`), possibly followed by a default.
_TYPE_ANNOTATION_RE = re.compile(
    r"(?:(?:typing\.|t\.)?(?:Optional|Union|Annotated|Literal|List|Dict|Tuple|Sequence|Mapping|Callable|Any"
    r"|SecretStr|SecretBytes|str|bytes|int|float|bool|dict|list|tuple|None|string|String|number|boolean)"
    r"(?![\w.-])"
    r"|[A-Za-z_][A-Za-z_.]*[0-9]*(?=\[|[ \t]*\||[ \t]+=(?!=)))"  # another type: `auth: AuthTypes | None = None`
    r"[\w\[\].| ]*+"
)
# An identifier naming a secret, as in `password = hashed_password` or `self.token = token`.
# Without digits: "Secret_Key.2024" is a password, "hashed_password" and "hashedPassword" are not.
_IDENTIFIER_RE = re.compile(
    r"(?:[a-z_]+|[A-Z_]+|[a-z]+(?:[A-Z][a-z]+)+)(?:\.(?:[a-z_]+|[A-Z_]+|[a-z]+(?:[A-Z][a-z]+)+))*"
)
_KEYWORDS = ("pass", "pwd", "secret", "token", "key", "auth")
_ANNOTATION_DEFAULT_RE = re.compile(r"=(?!=)[ \t]*")


@functools.lru_cache(maxsize=4096)
def _is_secret_key(key: str) -> bool:
    parts = [p.lower() for p in _KEY_PART_RE.findall(key)]
    if not parts:
        return False
    last = parts[-1]
    if last.endswith(("passwords", "passwds")):  # "Passwords: ..." (but "tokens" and "secrets" are counts and topics)
        last = last[:-1]
    if last in _SECRET_KEY_WORDS or last.endswith(_SECRET_KEY_SUFFIXES):
        return True
    if parts[-2:] == ["key", "id"] and "private" in parts:  # a service account's private_key_id
        return True
    return last == "key" and any(p in _KEY_QUALIFIERS for p in parts[:-1])


def _kv_value_span(text: str, pos: int, key: str, *, quoted_only: bool) -> tuple[int, int, int] | None:
    """(start, end, end of the whole value) of the secret value at `pos`, or None with no value or
    when the value is a literal, a reference or code rather than a secret."""
    value = _KV_VALUE_RE.match(text, pos)
    if value is None:
        return None
    group = value.lastgroup or "uq"
    if quoted_only and group == "uq":
        return None
    start, end = value.span(group)
    raw = text[start:end]
    if group == "uq":
        if _CODE_REFERENCE_RE.match(raw) is not None or _PLACEHOLDER_RE.match(raw):
            return None
        call = _CALL_RE.fullmatch(raw)
        if call is not None and more.wordy(call.group("name")):
            return None
        whole = raw
        while end > start and text[end - 1] in ")]}>" and not _PLACEHOLDER_RE.match(raw):
            end -= 1
        raw = text[start:end]
        lowered = raw.lower()
        if (
            lowered in _NON_SECRET_VALUES
            or raw.startswith(("[", "{", "<"))  # a structure or markup
            # "(a)" is a structure, "(ZlzjLmecDy3Y" a password
            or (raw.startswith("(") and (whole.endswith(")") or len(raw) < 4))
            or not any(c.isalnum() for c in raw)  # "#", "*****"
            or (raw.isdigit() and len(raw) <= 3)  # for (pass = 0; ...)
            or lowered == key.lower().rpartition(".")[2]  # token=token, self.token = token
            or (
                ("_" in raw or "." in raw or not (raw.islower() or raw.isupper()))
                and _IDENTIFIER_RE.fullmatch(raw) is not None
                and any(word in lowered for word in _KEYWORDS)
            )
        ):
            return None
    if end <= start or _PLACEHOLDER_RE.match(raw) or more.is_filler(raw) or more.is_placeholder_words(raw):
        return None
    return start, end, value.end()


def _kv_spans(text: str) -> list[tuple[int, int]]:
    lowered = text.lower()
    if len(lowered) == len(text):
        haystack, keyword_re = lowered, _KV_KEYWORD_RE
    else:  # lower() changed the length (rare Unicode): search the original case-insensitively
        haystack, keyword_re = text, _KV_KEYWORD_RE_I
    reversed_text = text[::-1]
    spans: list[tuple[int, int]] = []
    pos = 0
    while (hit := keyword_re.search(haystack, pos)) is not None:
        # The rest of the key, then the separator: most keyword hits in prose stop here.
        after = _KV_AFTER_KEY_RE.match(text, hit.end())
        if after is None:
            pos = hit.end()
            continue
        pos = after.end()
        key_end = after.end("tail")
        head = _KV_KEY_HEAD_RE.match(reversed_text, len(text) - hit.start())
        key_start = hit.start() - (head.end() - head.start() if head else 0)
        if key_end - key_start > _MAX_KEY_CHARS:
            continue
        bare = text[key_start:key_end].lstrip("-")
        if not bare or not (bare[0].isalpha() or bare[0] == "_"):
            continue
        # Any other `..._key` (`mistral_key`, `?key=` in a URL) holds a secret only if its value looks random.
        random_only = not _is_secret_key(bare)
        if random_only and not _names_a_key(bare):
            continue
        if text.endswith(_DOC_FIELD_PREFIXES, max(0, key_start - 9), key_start):
            continue  # ":param token: the token to use"
        if text.endswith("${", 0, key_start):
            continue  # a shell parameter expansion: ${DB_PASSWORD:?missing}
        sep = after.group("sep")
        value_pos = after.end()
        if sep == ":" and not after.group("q"):
            annotation = _TYPE_ANNOTATION_RE.match(text, value_pos)
            if annotation is not None:  # `password: str` -- but redact `password: str = "hunter2"`
                default = _ANNOTATION_DEFAULT_RE.match(text, annotation.end())
                if default is None:
                    pos = annotation.end()
                    continue
                value_pos = default.end()
        # `key => value` is an arrow function in JavaScript, a hash or array entry with a quoted value
        # in PHP or Ruby.
        found = _kv_value_span(text, value_pos, bare, quoted_only=sep == "=>")
        if found is None:
            continue
        start, end, pos = found
        if random_only and not more.looks_random(text[start:end]):
            continue
        spans.append((start, end))
    return spans


_NOT_SECRET_KEYS = frozenset(
    {"public", "primary", "foreign", "sort", "partition", "cache", "idempotency", "object", "file", "row", "hot",
     "shortcut", "lookup", "dedupe", "dedup", "hash", "range", "composite", "unique", "natural", "surrogate", "map",
     "dict", "group", "join", "index", "s3", "blob", "redis", "cursor", "page", "next", "form", "react", "list"}
)


def _names_a_key(key: str) -> bool:
    """`mistral_key`, `DD_KEY`, `key` (in a URL's query), `appid`, but not `primary_key` or `cache_key`."""
    parts = [p.lower() for p in _KEY_PART_RE.findall(key)]
    if not parts:
        return False
    if parts[-1] in ("appid", "apikey", "subscriptionkey"):
        return True
    return parts[-1] == "key" and not any(part in _NOT_SECRET_KEYS for part in parts[:-1])


# scheme://user:password@host (the password may itself contain "@": the last "@" ends it)
_URL_PASSWORD_RE = re.compile(r"://(?<=[A-Za-z0-9+.-]://)[^\s:/@?#]*+:(?P<secret>[^\s/?#]+)@")

# curl -u user:password / --user user:password (only with "curl" shortly before it)
_USER_FLAG_RE = re.compile(r"-(?<![\w-]-)(?:u|-user)(?:[ \t]+|=)[\"']?[^\s:'\"]+:(?P<secret>[^\s'\"]+)")
_CURL_LOOKBACK = 500


def _curl_user_spans(text: str, begin: int, stop: int) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for m in _USER_FLAG_RE.finditer(text, begin, stop):
        if text.rfind("curl", max(0, m.start() - _CURL_LOOKBACK), m.start()) >= 0:
            spans.append(m.span("secret"))
    return spans


# --password value (with a space; --password=value is a key=value pair)
_PASSWORD_FLAG_RE = re.compile(r"-(?<![\w-]-)-?(?:password|passwd|pass|pwd)[ \t]+[\"']?(?P<secret>[^\s'\"-][^\s'\"]*+)")


# ---------------------------------------------------------------------------------------------
# card numbers

# A run of digit groups, not inside a word, a decimal or dotted number, or a URL path.
# (At least 13 characters long, so that short numbers are skipped without leaving the regex engine.)
_DIGIT_RUN_RE = re.compile(r"[0-9](?<![\w.,/][0-9])(?=[0-9 -]{12})[0-9]*+(?:[ -][0-9]++)*+")
_DIGITS_RE = re.compile(r"[0-9]+")


def _card_digits_ok(digits: str) -> bool:
    # 2-6: Mastercard 2-series, Amex/Diners/JCB, Visa, Mastercard, Discover/UnionPay/Maestro.
    return digits[0] in "23456" and more.luhn_ok(digits)


def _count_digits(text: str) -> int:
    return sum(text.count(d) for d in "0123456789")


def _card_window(text: str, groups: list[tuple[int, int]], i: int) -> int | None:
    """Index of the last group of the longest valid card number starting at group i, if any."""
    first_start, first_end = groups[i]
    size = first_end - first_start
    if size >= 13:  # an ungrouped number
        return i if size <= 19 and _card_digits_ok(text[first_start:first_end]) else None
    if size != 4 or i + 1 == len(groups):
        return None
    # Grouped: "4111 1111 1111 1111", "3782-822463-10005", "3056 9309 0259 04"; one separator,
    # a first group of 4, then groups of 3-6 (the last one may have 2), 13-19 digits in all.
    sep = text[first_end]
    digits = 4
    ends: list[int] = []
    for j in range(i + 1, len(groups)):
        start, end = groups[j]
        if text[groups[j - 1][1]] != sep or not 2 <= end - start <= 6:
            break
        digits += end - start
        if digits > 19:
            break
        if digits >= 13:
            ends.append(j)
        if end - start == 2:  # only as the last group
            break
    for j in reversed(ends):
        if _card_digits_ok("".join(text[start:end] for start, end in groups[i : j + 1])):
            return j
    return None


def _card_spans(text: str) -> list[tuple[int, int]]:
    if _count_digits(text) < 13:
        return []
    spans: list[tuple[int, int]] = []
    # The digits of an IBAN ("DE89 3704 0044 0532 0130 00") are not a card number, even when a
    # mistyped check digit makes it an invalid IBAN.
    iban_zones: tuple[list[int], list[int]] | None = None  # (starts, ends) of IBAN-like text
    for run in _DIGIT_RUN_RE.finditer(text):
        run_start, run_end = run.span()
        if run_end - run_start < 13:
            continue
        groups = [(g.start() + run_start, g.end() + run_start) for g in _DIGITS_RE.finditer(run.group())]
        if run_end < len(text) and (
            text[run_end].isalnum()
            or text[run_end] == "_"
            or (text[run_end] == "." and text[run_end + 1 : run_end + 2].isalnum())
        ):
            # The last group is glued to a word ("1234abc") or continues a dotted name or a
            # decimal ("20160419091055.GF2345", "3.1415"): not a card number.
            groups.pop()
        if run_start and text[run_start - 1] == " ":
            if iban_zones is None:
                zones = _iban_like_spans(text, valid_only=False)
                iban_zones = ([start for start, _ in zones], [end for _, end in zones])
            k = bisect.bisect_right(iban_zones[0], run_start) - 1
            if k >= 0 and iban_zones[1][k] > run_start:
                groups = [group for group in groups if group[0] >= iban_zones[1][k]]
        i = 0
        while i < len(groups):
            j = _card_window(text, groups, i)
            if j is None:
                i += 1
            else:
                spans.append((groups[i][0], groups[j][1]))
                i = j + 1
    return spans


# ---------------------------------------------------------------------------------------------
# IBANs

# Total IBAN length per country (SWIFT IBAN registry).
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip

_IBAN_CANDIDATE_RE = re.compile(r"[A-Z]{2}[0-9]{2}(?<![A-Za-z0-9][A-Z]{2}[0-9]{2})(?:[ -]?[A-Z0-9]){11,40}+")
_ALNUM_RUN_RE = re.compile(r"[A-Z0-9]+")


def _iban_ok(compact: str) -> bool:
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _iban_extent(text: str, start: int, end: int) -> int | None:
    """End of the IBAN-shaped text that starts at `start` inside the candidate text[start:end], if any
    (the checksum is not checked here).

    For a known country the IBAN has exactly that country's length (so a following word such as
    "BIC" is not swallowed); for another country code the whole candidate is taken."""
    known = _IBAN_LENGTHS.get(text[start : start + 2])
    count = 0
    last: tuple[int, int] | None = None  # (characters, index after) at the last group end
    for group in _ALNUM_RUN_RE.finditer(text, start, end):
        count += group.end() - group.start()
        after = group.end()
        at_boundary = after == len(text) or not (text[after].isalnum() or text[after] == "_")
        if known:
            if count >= known:
                return after if count == known and at_boundary else None
        elif at_boundary:
            last = (count, after)
    if known or last is None or not 15 <= last[0] <= 34:
        return None
    return last[1]


def _iban_like_spans(text: str, *, valid_only: bool) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    pos = 0
    while (m := _IBAN_CANDIDATE_RE.search(text, pos)) is not None:
        start = m.start()
        end = _iban_extent(text, start, m.end())
        if end is None or (valid_only and not _iban_ok(text[start:end].replace(" ", "").replace("-", ""))):
            pos = start + 1
        else:
            spans.append((start, end))
            pos = end
    return spans


def _iban_spans(text: str) -> list[tuple[int, int]]:
    spans = _iban_like_spans(text, valid_only=True)
    upper = text.upper()
    if upper != text and len(upper) == len(text):  # "de89 3704 0044 0532 0130 00"
        spans = more._merge(spans + _iban_like_spans(upper, valid_only=True))
    return spans


# ---------------------------------------------------------------------------------------------
# US social security numbers: ddd-dd-dddd, found from its first dash

_SSN_RE = re.compile(r"-(?<=[0-9]{3}-)(?<![\w-][0-9]{3}-)[0-9]{2}-[0-9]{4}(?![\w-])")


def _ssn_spans(text: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for m in _SSN_RE.finditer(text):
        start = m.start() - 3
        area, group, serial = text[start : m.start()], text[m.start() + 1 : m.start() + 3], text[m.end() - 4 : m.end()]
        if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
            continue
        spans.append((start, m.end()))
    return spans


# ---------------------------------------------------------------------------------------------


def _body_not_filler(value: str) -> bool:
    """A token whose body is not a placeholder such as `ghp_xxxxxxxx...`."""
    return more.not_filler(value[4:])


def _both(*checks: Callable[[str], bool] | None) -> Callable[[str], bool]:
    present = [check for check in checks if check is not None]
    return lambda value: all(check(value) for check in present)


def _builtin_rules(*, contacts: bool) -> list[_Rule]:
    rules = [
        _Rule("private_key", _regex_finder(_PRIVATE_KEY_RE), ("private key",)),
        _Rule("private_key", _sliced(more.putty_spans), ("private-lines",)),
        _Rule("private_key", _sliced(more.der_key_spans), ("mii", "mhccaqeei", "mc4caqawbqydk2vwbciei")),
        _Rule("private_key", _sliced(more.jwk_spans), ('"kty"',)),
        _Rule("private_key", _sliced(more.seed_phrase_spans), ("phrase", "mnemonic")),
        _Rule("jwt", _regex_finder(_JWT_RE), ("eyj",)),
        # an access key id with its secret next to it: both, before the id alone is taken
        _Rule("cloud_credential", _sliced(more.aws_pair_spans), ("akia", "asia")),
    ]
    for pattern, validate, hints in _API_KEY_SPECS:
        rules.append(_Rule("api_key", _regex_finder(re.compile(pattern), _both(validate, _body_not_filler)), hints))
    for kind, pattern, validate, hints in more.KEY_SPECS:
        rules.append(_Rule(kind, _regex_finder(re.compile(pattern), validate), hints))
    for anchor, pattern, validate in _HEADER_SPECS:
        rules.append(_Rule("api_key", _anchored_finder(anchor, re.compile(pattern), validate), (anchor,)))
    rules.append(_Rule("api_key", _sliced(more.call_literal_spans), ("(",)))
    rules += [
        _Rule("password", _sliced(_kv_spans), ("pass", "pwd", "secret", "token", "key", "auth", "psk", "appid")),
        _Rule("password", _regex_finder(_URL_PASSWORD_RE), ("://",)),
        _Rule("password", _curl_user_spans, ("curl",)),
        _Rule("password", _regex_finder(_PASSWORD_FLAG_RE), ("-pass", "-pwd")),
    ]
    for pattern, hints in more.PASSWORD_PATTERNS:
        rules.append(_Rule("password", _regex_finder(re.compile(pattern)), hints))
    rules += [
        _Rule("password", _sliced(more.prose_password_spans)),
        _Rule("cloud_credential", _sliced(more.aws_secret_spans), ("/", "+")),
        _Rule("secret", _sliced(more.context_secret_spans), more.CONTEXT_HINTS),
        _Rule("card_number", _sliced(_card_spans)),
        _Rule("card_number", _sliced(more.grouped_card_spans)),
        _Rule("iban", _sliced(_iban_spans)),
        _Rule("ssn", _sliced(_ssn_spans), ("-",)),
        _Rule("national_id", _sliced(more.national_id_spans)),
    ]
    if contacts:
        rules += [
            _Rule("email", _sliced(more.email_spans), ("@", "%40", "at]", "at)", "at}")),
            _Rule("phone", _sliced(more.phone_spans)),
        ]
    return rules


#: contacts -> the built-in rules, built on first use (`_builtin`)
_BUILTIN_RULES: dict[bool, tuple[_Rule, ...]] = {}
_BUILTIN_LOCK = threading.Lock()


def _builtin(contacts: bool) -> tuple[_Rule, ...]:
    """The built-in rules (with or without contacts), built once, by whichever thread needs them first."""
    global more
    rules = _BUILTIN_RULES.get(contacts)
    if rules is None:
        with _BUILTIN_LOCK:
            rules = _BUILTIN_RULES.get(contacts)
            if rules is None:
                from gum_mcp.store import redaction_rules as more

                rules = _BUILTIN_RULES[contacts] = tuple(_builtin_rules(contacts=contacts))
    return rules


class Redactor:
    """Replaces secrets in text with `[REDACTED:<kind>]` tokens. Thread-safe and reusable."""

    def __init__(self, extra_patterns: Sequence[str] = (), *, contacts: bool = True) -> None:
        """`extra_patterns`: GUM_REDACT_PATTERNS; `contacts`: GUM_REDACT_CONTACTS (emails, phone numbers)."""
        if isinstance(extra_patterns, str):
            extra_patterns = [extra_patterns]
        self.contacts = contacts
        self.extra_patterns = tuple(p for p in extra_patterns if p)
        custom: list[_Rule] = []
        for pattern in extra_patterns:
            if not pattern:
                continue
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                message = f"GUM_REDACT_PATTERNS: invalid regular expression {pattern!r}: {exc}"
                raise ValueError(message) from None
            custom.append(_Rule("custom", _regex_finder(compiled)))
        self._custom = tuple(custom)
        self._rules: tuple[_Rule, ...] | None = None  # the built-in rules, then the custom ones; on first use

    def _built_rules(self) -> tuple[_Rule, ...]:
        rules = self._rules
        if rules is None:
            rules = self._rules = _builtin(self.contacts) + self._custom
        return rules

    def redact(self, text: str) -> RedactionResult:
        if not text:
            return RedactionResult(text, 0, ())
        total = 0
        kinds: set[str] = set()
        # A replacement can give a later-found secret the boundary an earlier rule needs (as in
        # "DE89 3704 0044 0532 0130 00ACME-1" with a custom pattern for "ACME-1"); another round
        # catches those, so that redacting the result again changes nothing.
        for _ in range(_MAX_ROUNDS):
            text, count = self._round(text, kinds)
            total += count
            if not count:
                break
        return RedactionResult(text, total, tuple(sorted(kinds)))

    def _round(self, text: str, kinds: set[str]) -> tuple[str, int]:
        lowered = text.lower()
        total = 0
        for rule in self._built_rules():
            if rule.hints is not None:
                for hint in rule.hints:
                    if hint in lowered:
                        break
                else:
                    continue
            text, count = _apply(text, rule)
            if count:
                total += count
                kinds.add(rule.kind)
        return text, total


_MAX_ROUNDS = 4


def _apply(text: str, rule: _Rule) -> tuple[str, int]:
    """Apply one rule to the parts of `text` outside existing redaction tokens."""
    if _TOKEN_MARK in text:
        free: list[tuple[int, int]] = []
        last = 0
        for m in _TOKEN_RE.finditer(text):
            free.append((last, m.start()))
            last = m.end()
        free.append((last, len(text)))
    else:
        free = [(0, len(text))]
    token = f"[REDACTED:{rule.kind}]"
    out: list[str] = []
    done = 0
    count = 0
    for seg_start, seg_end in free:
        if seg_end <= seg_start:
            continue
        for start, end in rule.find(text, seg_start, seg_end):
            out.append(text[done:start])
            out.append(token)
            done = end
            count += 1
    if not count:
        return text, 0
    out.append(text[done:])
    return "".join(out), count


_DEFAULT = Redactor()


def redact(text: str) -> str:
    """Redact `text` with the built-in rules only."""
    return _DEFAULT.redact(text).text

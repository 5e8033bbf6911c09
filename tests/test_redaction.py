"""Behavioural tests for secret redaction (gum_mcp.store.redaction).

Secret-looking fixtures are assembled at runtime from harmless pieces so that secret scanners (e.g.
GitHub push protection) do not flag this file; none of them is a real credential.
"""

from __future__ import annotations

import dataclasses

import pytest

from gum_mcp.store.redaction import RedactionResult, Redactor, redact

R = Redactor()

# Pseudo-random, mixed-case alphanumerics to build token bodies from.
_BODY = "R8d2Kq9ZpL4mW7xV1nC6tB3yH5gJ0sF2aQ8eU4oI7wT9rY1uE6iO3pA5sD8fG2hJ4kL7zX9cV1bN3mQ6wE8rT0yU2iO5p"


def body(n: int, offset: int = 0) -> str:
    return (_BODY * 3)[offset : offset + n]


def tok(*parts: str) -> str:
    return "".join(parts)


OPENAI_LEGACY = tok("sk", "-", body(48))
OPENAI_PROJECT = tok("sk", "-proj-", body(40), "_", body(40, 7), "-", body(50, 3))
ANTHROPIC = tok("sk", "-ant-", "api03-", body(90, 2), "-", body(6, 11), "AA")
GITHUB_CLASSIC = tok("gh", "p_", body(36))
GITHUB_OAUTH = tok("gh", "o_", body(36, 5))
GITHUB_APP = tok("gh", "s_", body(36, 9))
GITHUB_FINE = tok("github", "_pat_", body(22), "_", body(59, 4))
GITLAB = tok("gl", "pat-", body(20, 1))
SLACK_BOT = tok("xo", "xb-", "2841739502-", "5928374610293-", body(24, 6))
SLACK_USER = tok("xo", "xp-", "2841739502-", "1029384756-", body(32, 8))
STRIPE_LIVE = tok("sk", "_live_", body(24, 3))
STRIPE_TEST = tok("sk", "_test_", body(24, 12))
STRIPE_RESTRICTED = tok("rk", "_live_", body(24, 13))
STRIPE_PUBLISHABLE = tok("pk", "_live_", body(24, 14))
AWS_ACCESS_KEY_ID = tok("AK", "IA", "Q3ZP7TNLX5RW2KDM")
AWS_TEMP_KEY_ID = tok("AS", "IA", "M4R7TQ2ZL8XW5NKD")
GOOGLE_API_KEY = tok("AI", "za", "Sy", body(33, 10))
HUGGINGFACE = tok("h", "f_", "KqZpLmWxVnCtByHgJsFaQeUoIwTrYuEi")
NPM = tok("np", "m_", body(36, 15))
JWT = tok(
    "eyJ",
    "hbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9",
    ".",
    "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ",
    ".",
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
)
PEM_BODY = "\n".join(
    [
        "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun",
        "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK",
        "LxoS2tFczGkPLPgizskuemMghRniWaoLcyehkd3qqGElvW/VDL5AaWTg0nLVkjRo",
    ]
)


def pem(kind: str, *, end: bool = True) -> str:
    label = f"{kind} PRIVATE KEY" if kind else "PRIVATE KEY"
    block = tok("-----BEGIN ", label, "-----\n", PEM_BODY, "\n")
    return block + tok("-----END ", label, "-----") if end else block


def assert_redacted(text: str, secret: str, kind: str, redactor: Redactor = R) -> RedactionResult:
    result = redactor.redact(text)
    assert secret not in result.text
    assert f"[REDACTED:{kind}]" in result.text
    assert kind in result.kinds
    assert result.count >= 1
    return result


def assert_untouched(text: str, redactor: Redactor = R) -> None:
    result = redactor.redact(text)
    assert result.text == text
    assert result.count == 0
    assert result.kinds == ()


# --------------------------------------------------------------------------------------------------
# the result type and the module-level helper


def test_result_is_a_frozen_dataclass() -> None:
    result = R.redact("nothing to see here")
    assert isinstance(result, RedactionResult)
    assert result == RedactionResult("nothing to see here", 0, ())
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.count = 3  # type: ignore[misc]


def test_empty_text() -> None:
    assert R.redact("") == RedactionResult("", 0, ())


def test_module_level_redact_returns_text() -> None:
    assert redact(f"key {OPENAI_LEGACY} end") == "key [REDACTED:api_key] end"
    assert redact("plain words") == "plain words"


def test_kinds_are_sorted_unique_and_count_counts_every_replacement() -> None:
    text = (
        f"SSN 123-45-6789 and card 4111 1111 1111 1111, then {GITHUB_CLASSIC} and {GITLAB}, "
        f"another card 5555-5555-5555-4444, password=hunter2, IBAN DE89 3704 0044 0532 0130 00"
    )
    result = R.redact(text)
    assert result.kinds == ("api_key", "card_number", "iban", "password", "ssn")
    assert result.count == 7
    assert result.text == (
        "SSN [REDACTED:ssn] and card [REDACTED:card_number], then [REDACTED:api_key] and "
        "[REDACTED:api_key], another card [REDACTED:card_number], password=[REDACTED:password], "
        "IBAN [REDACTED:iban]"
    )


# --------------------------------------------------------------------------------------------------
# private keys


@pytest.mark.parametrize("kind", ["", "RSA", "EC", "DSA", "OPENSSH", "ENCRYPTED"])
def test_private_key_blocks(kind: str) -> None:
    text = f"~/.ssh/id contents:\n{pem(kind)}\n$ echo done"
    result = assert_redacted(text, PEM_BODY.splitlines()[1], "private_key")
    assert result.text == "~/.ssh/id contents:\n[REDACTED:private_key]\n$ echo done"
    assert result.count == 1


def test_pgp_private_key_block() -> None:
    text = tok(
        "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n",
        PEM_BODY,
        "\n-----END PGP PRIVATE KEY BLOCK-----\nnext line",
    )
    assert R.redact(text).text == "[REDACTED:private_key]\nnext line"


def test_private_key_without_end_is_redacted_to_the_end() -> None:
    text = "key pasted below\n" + pem("RSA", end=False) + "more base64 that was cut off\nAND MORE"
    result = assert_redacted(text, "AND MORE", "private_key")
    assert result.text == "key pasted below\n[REDACTED:private_key]"


def test_two_private_keys_are_two_replacements() -> None:
    text = f"a\n{pem('EC')}\nb\n{pem('OPENSSH')}\nc"
    result = R.redact(text)
    assert result.text == "a\n[REDACTED:private_key]\nb\n[REDACTED:private_key]\nc"
    assert result.count == 2


def test_public_key_and_certificate_are_kept() -> None:
    assert_untouched(
        "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n"
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
    )


# --------------------------------------------------------------------------------------------------
# JWTs


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("Authorization: Bearer {jwt}", "Authorization: Bearer [REDACTED:jwt]"),
        ('{{"id_token": "{jwt}", "expires_in": 3600}}', '{{"id_token": "[REDACTED:jwt]", "expires_in": 3600}}'),
        (
            "https://app.example.com/cb?token={jwt}&state=abc",
            "https://app.example.com/cb?token=[REDACTED:jwt]&state=abc",
        ),
        ("Cookie: session={jwt}; theme=dark", "Cookie: session=[REDACTED:jwt]; theme=dark"),
        ("{jwt}", "[REDACTED:jwt]"),
    ],
)
def test_jwt(template: str, expected: str) -> None:
    result = assert_redacted(template.format(jwt=JWT), JWT, "jwt")
    assert result.text == expected.format()
    assert result.kinds == ("jwt",)


def test_jwt_without_signature() -> None:
    unsigned = tok("eyJ", "hbGciOiJub25lIn0", ".", "eyJzdWIiOiJhZG1pbiJ9", ".")
    assert R.redact(f"alg none: {unsigned} !").text == "alg none: [REDACTED:jwt] !"


# --------------------------------------------------------------------------------------------------
# API keys


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(OPENAI_LEGACY, id="openai"),
        pytest.param(OPENAI_PROJECT, id="openai-project"),
        pytest.param(ANTHROPIC, id="anthropic"),
        pytest.param(GITHUB_CLASSIC, id="github-classic"),
        pytest.param(GITHUB_OAUTH, id="github-oauth"),
        pytest.param(GITHUB_APP, id="github-app"),
        pytest.param(GITHUB_FINE, id="github-fine-grained"),
        pytest.param(GITLAB, id="gitlab"),
        pytest.param(SLACK_BOT, id="slack-bot"),
        pytest.param(SLACK_USER, id="slack-user"),
        pytest.param(STRIPE_LIVE, id="stripe-live"),
        pytest.param(STRIPE_TEST, id="stripe-test"),
        pytest.param(STRIPE_RESTRICTED, id="stripe-restricted"),
        pytest.param(STRIPE_PUBLISHABLE, id="stripe-publishable"),
        pytest.param(AWS_ACCESS_KEY_ID, id="aws"),
        pytest.param(AWS_TEMP_KEY_ID, id="aws-temporary"),
        pytest.param(GOOGLE_API_KEY, id="google"),
        pytest.param(HUGGINGFACE, id="huggingface"),
        pytest.param(NPM, id="npm"),
    ],
)
@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("the key is {key} ok?", "the key is [REDACTED:api_key] ok?"),
        ("client = Client('{key}')", "client = Client('[REDACTED:api_key]')"),
        ('{{"credential": "{key}"}}', '{{"credential": "[REDACTED:api_key]"}}'),
        ("{key}", "[REDACTED:api_key]"),
        ("(see {key}).", "(see [REDACTED:api_key])."),
    ],
    ids=["prose", "code", "json", "alone", "punctuation"],
)
def test_api_keys(key: str, template: str, expected: str) -> None:
    result = assert_redacted(template.format(key=key), key, "api_key")
    assert result.text == expected.format()
    assert result.kinds == ("api_key",)
    assert result.count == 1


def test_api_keys_in_a_pasted_env_file_keep_the_variable_names() -> None:
    env = "\n".join(
        [
            "# .env  (production)",
            f"OPENAI_API_KEY={OPENAI_PROJECT}",
            f"ANTHROPIC_API_KEY={ANTHROPIC}",
            f"GITHUB_TOKEN={GITHUB_CLASSIC}",
            f"AWS_ACCESS_KEY_ID={AWS_ACCESS_KEY_ID}",
            "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY",
            f"STRIPE_SECRET_KEY={STRIPE_LIVE}",
            "DB_PASSWORD=Tr0ub4dor&3",
            "DATABASE_URL=postgres://app:s3cr3t-Pa55@db.internal:5432/app",
            "DEBUG=true",
            "PORT=8080",
            "LOG_LEVEL=info",
        ]
    )
    result = R.redact(env)
    assert result.text == "\n".join(
        [
            "# .env  (production)",
            "OPENAI_API_KEY=[REDACTED:api_key]",
            "ANTHROPIC_API_KEY=[REDACTED:api_key]",
            "GITHUB_TOKEN=[REDACTED:api_key]",
            "AWS_ACCESS_KEY_ID=[REDACTED:api_key]",
            "AWS_SECRET_ACCESS_KEY=[REDACTED:password]",
            "STRIPE_SECRET_KEY=[REDACTED:api_key]",
            "DB_PASSWORD=[REDACTED:password]",  # all of it: "&3" was left behind once
            "DATABASE_URL=postgres://app:[REDACTED:password]@db.internal:5432/app",
            "DEBUG=true",
            "PORT=8080",
            "LOG_LEVEL=info",
        ]
    )
    assert result.kinds == ("api_key", "password")
    assert result.count == 8


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'curl -H "Authorization: Bearer abc123def456ghi789jkl" https://api.example.com/v1/items',
            'curl -H "Authorization: Bearer [REDACTED:api_key]" https://api.example.com/v1/items',
        ),
        (
            "curl https://api.example.com -H 'authorization: bearer 9f8e7d6c5b4a' -d '{}'",
            "curl https://api.example.com -H 'authorization: bearer [REDACTED:api_key]' -d '{}'",
        ),
        (
            "Authorization: Basic dXNlcjpjb3JyZWN0LWhvcnNlLWJhdHRlcnk=",
            "Authorization: Basic [REDACTED:api_key]",
        ),
        (
            "GET /v1/me HTTP/1.1\nHost: api.example.com\nAuthorization: token 0a1b2c3d4e5f\nAccept: */*",
            "GET /v1/me HTTP/1.1\nHost: api.example.com\nAuthorization: token [REDACTED:api_key]\nAccept: */*",
        ),
        (
            "> bearer: Bearer Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5",
            "> bearer: Bearer [REDACTED:api_key]",
        ),
        (
            f'curl -H "Authorization: Bearer {OPENAI_LEGACY}" https://api.openai.com/v1/models',
            'curl -H "Authorization: Bearer [REDACTED:api_key]" https://api.openai.com/v1/models',
        ),
    ],
)
def test_authorization_headers(text: str, expected: str) -> None:
    result = R.redact(text)
    assert result.text == expected
    assert result.kinds == ("api_key",)
    assert result.count == 1


def test_bearer_prose_is_not_a_token() -> None:
    assert_untouched("The bearer of this letter is my friend; bearer tokens are sent in headers.")


# --------------------------------------------------------------------------------------------------
# passwords


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("password=hunter2", "password=[REDACTED:password]"),
        ("Password: hunter2", "Password: [REDACTED:password]"),
        ("PASSWD = hunter2\n", "PASSWD = [REDACTED:password]\n"),
        ("pwd: hunter2", "pwd: [REDACTED:password]"),
        ("pass=hunter2", "pass=[REDACTED:password]"),
        ("secret: 'it is a secret'", "secret: '[REDACTED:password]'"),
        ("token = abc123", "token = [REDACTED:password]"),
        ("api_key=abc123", "api_key=[REDACTED:password]"),
        ("apikey: abc123", "apikey: [REDACTED:password]"),
        ("access_token=abc123&expires=3600", "access_token=[REDACTED:password]&expires=3600"),
        ('client_secret: "x7-Yz"', 'client_secret: "[REDACTED:password]"'),
        ("auth: abc123", "auth: [REDACTED:password]"),
        (
            '{"password": "correct horse battery staple", "user": "bob"}',
            '{"password": "[REDACTED:password]", "user": "bob"}',
        ),
        ("{'Password':'hunter2'}", "{'Password':'[REDACTED:password]'}"),
        ("spring.datasource.password=hunter2", "spring.datasource.password=[REDACTED:password]"),
        ("export PGPASSWORD=hunter2", "export PGPASSWORD=[REDACTED:password]"),
        ("const dbPassword = 'hunter2';", "const dbPassword = '[REDACTED:password]';"),
        ("$config['db_pass'] => 'hunter2',", "$config['db_pass'] => '[REDACTED:password]',"),
        ("X-Api-Key: 5f4dcc3b5aa765d61d8327deb882cf99", "X-Api-Key: [REDACTED:password]"),
        ("PASSWORD=Secret_Key.hunter2", "PASSWORD=[REDACTED:password]"),
        ("password: MyPassword_hunter2", "password: [REDACTED:password]"),
        ("password = 'hashed_password_hunter2'", "password = '[REDACTED:password]'"),
        ('password: "get_hunter2()"', 'password: "[REDACTED:password]"'),
        ("password: 'hunter2[1]'", "password: '[REDACTED:password]'"),
        ("clientSecret: abc.def", "clientSecret: [REDACTED:password]"),
        ("mysql --password=hunter2 -u root", "mysql --password=[REDACTED:password] -u root"),
        ("mysql --password hunter2 -u root", "mysql --password [REDACTED:password] -u root"),
        (
            "Server=db01;Database=shop;User Id=sa;Password=P@ssw0rd!;",
            "Server=db01;Database=shop;User Id=sa;Password=[REDACTED:password];",
        ),
        (
            "Login form  Username: alice  Password: s3cr3t!",
            "Login form  Username: alice  Password: [REDACTED:password]",
        ),
        ("Note: password: hunter2", "Note: password: [REDACTED:password]"),
    ],
)
def test_password_values(text: str, expected: str) -> None:
    result = assert_redacted(text, "hunter2", "password")
    assert result.text == expected
    assert result.kinds == ("password",)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "git remote add origin https://alice:s3cr3tPass@github.com/alice/repo.git",
            "git remote add origin https://alice:[REDACTED:password]@github.com/alice/repo.git",
        ),
        (
            "postgresql://app_user:pa55-word@db.example.com:5432/shop?sslmode=require",
            "postgresql://app_user:[REDACTED:password]@db.example.com:5432/shop?sslmode=require",
        ),
        ("redis://:s3cr3t@cache:6379/0", "redis://:[REDACTED:password]@cache:6379/0"),
        (
            "mongodb+srv://admin:p%40ss@cluster0.mongodb.net/",
            "mongodb+srv://admin:[REDACTED:password]@cluster0.mongodb.net/",
        ),
        ("ftp://bob:p@ss@files.example.com/x", "ftp://bob:[REDACTED:password]@files.example.com/x"),
        (
            "curl -u admin:hunter2 https://jenkins.local/api/json",
            "curl -u admin:[REDACTED:password] https://jenkins.local/api/json",
        ),
        (
            "curl --user 'deploy:s3cr3t' https://example.com",
            "curl --user 'deploy:[REDACTED:password]' https://example.com",
        ),
    ],
)
def test_passwords_in_urls_and_commands(text: str, expected: str) -> None:
    result = R.redact(text)
    assert result.text == expected
    assert result.kinds == ("password",)
    assert result.count == 1


@pytest.mark.parametrize(
    "text",
    [
        "https://github.com/alice/repo.git",
        "ssh://git@github.com:22/alice/repo.git",
        "git@github.com:alice/repo.git",
        "https://example.com:8443/path?q=1",
        "docker run -u 1000:1000 image",
    ],
)
def test_urls_without_passwords_are_kept(text: str) -> None:
    assert_untouched(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('password: str = "hunter2"', 'password: str = "[REDACTED:password]"'),
        ("api_token: Optional[str] = 'hunter2'", "api_token: Optional[str] = '[REDACTED:password]'"),
        ('os.environ["DB_PASSWORD"] = "hunter2"', 'os.environ["DB_PASSWORD"] = "[REDACTED:password]"'),
        ("{:password => 'hunter2'}", "{:password => '[REDACTED:password]'}"),
        (
            "requests.get(url, auth=('bob', 'x'), token='hunter2')",
            "requests.get(url, auth=('bob', 'x'), token='[REDACTED:password]')",
        ),
    ],
)
def test_password_values_in_code(text: str, expected: str) -> None:
    result = assert_redacted(text, "hunter2", "password")
    assert result.text == expected


@pytest.mark.parametrize(
    "text",
    [
        "def connect(host: str, token: str, password: Optional[str] = None) -> Session:",
        "token = get_token(scope)",
        "password = getpass.getpass()",
        "client = Client(api_key=api_key, password=password)",
        "db_password = os.environ.get('DB_PASSWORD')",
        "const token = process.env.GITHUB_TOKEN;",
        "password: ${DB_PASSWORD}",
        'password: "${DB_PASSWORD}"',
        "API_KEY=$OPENAI_API_KEY",
        "token: {{ secrets.GITHUB_TOKEN }}",
        "password=<your-password>",
        "Password: ********",
        "tokens.map(token => token.trim())",
        "if (aliceSecret === bobSecret) { return; }",
        "if password == expected_password:",
        "    :param token: the token to use for the request",
        "    :type auth: tuple",
        "auth: null",
        "self.token = self._load_token()",
        "self.password = password",
        "password = hashed_password",
        "const password = hashedPassword;",
        "app.secret_key = SECRET_KEY",
        "for (pass = 0; pass < 2; pass++)",
        "auth: AuthTypes | None = None,",
        "creds['token'] = data['token']",
    ],
)
def test_code_without_secret_values_is_untouched(text: str) -> None:
    assert_untouched(text)


def test_password_keeps_the_key_when_the_value_is_a_known_token() -> None:
    result = R.redact(f"password={GITHUB_CLASSIC}")
    assert result.text == "password=[REDACTED:api_key]"
    assert result.kinds == ("api_key",)
    assert result.count == 1


# --------------------------------------------------------------------------------------------------
# card numbers


@pytest.mark.parametrize(
    "number",
    [
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "4111111111111111",
        "5555 5555 5555 4444",
        "4242424242424242",
        "3782 822463 10005",
        "378282246310005",
        "6011 1111 1111 1117",
        "3056 9309 0259 04",
        "2223 0031 2200 3222",
        "4539 5787 6362 1486",
    ],
)
@pytest.mark.parametrize(
    "template",
    [
        "Card: {n}",
        "Paid with {n}, exp 12/27, CVC 123.",
        "{n}",
        "| Visa | {n} | Alice |",
        "card_number={n}",
    ],
)
def test_card_numbers(number: str, template: str) -> None:
    text = template.format(n=number)
    result = assert_redacted(text, number, "card_number")
    assert result.text == template.format(n="[REDACTED:card_number]")
    assert result.kinds == ("card_number",)


def test_card_number_next_to_other_numbers() -> None:
    result = R.redact("Order 12 4111 1111 1111 1111 2025 qty 3")
    assert result.text == "Order 12 [REDACTED:card_number] 2025 qty 3"


@pytest.mark.parametrize(
    "number",
    [
        "4111 1111 1111 1112",
        "4111111111111112",
        "1234 5678 9012 3456",
        "1234-5678-1234-5678",
        "5555 5555 5555 5555",
    ],
)
def test_numbers_failing_luhn_are_kept(number: str) -> None:
    assert_untouched(f"Reference {number} for your records")


# --------------------------------------------------------------------------------------------------
# IBANs


@pytest.mark.parametrize(
    "iban",
    [
        "DE89 3704 0044 0532 0130 00",
        "DE89370400440532013000",
        "GB82 WEST 1234 5698 7654 32",
        "GB29NWBK60161331926819",
        "FR14 2004 1010 0505 0001 3M02 606",
        "NL91 ABNA 0417 1643 00",
        "CH93 0076 2011 6238 5295 7",
        "AT61 1904 3002 3457 3201",
        "BE68 5390 0754 7034",
        "ES91 2100 0418 4502 0005 1332",
        "IT60 X054 2811 1010 0000 0123 456",
        "NO93 8601 1117 947",
        "PL61 1090 1014 0000 0712 1981 2874",
    ],
)
@pytest.mark.parametrize(
    "template",
    [
        "Bitte überweisen Sie an IBAN {i} bis Freitag.",
        "IBAN: {i}\nBIC: COBADEFFXXX",
        "{i}",
        "Account ({i}), thanks",
    ],
)
def test_ibans(iban: str, template: str) -> None:
    text = template.format(i=iban)
    result = assert_redacted(text, iban, "iban")
    assert result.text == template.format(i="[REDACTED:iban]")
    assert result.kinds == ("iban",)
    assert result.count == 1


@pytest.mark.parametrize(
    "text",
    [
        "DE89 3704 0044 0532 0130 01",  # wrong check digits; the digits pass the Luhn check
        "GB82 WEST 4111 1111 1111 14",  # likewise
    ],
)
def test_invalid_iban_digits_are_not_card_numbers(text: str) -> None:
    assert "card_number" not in R.redact(f"IBAN {text}").kinds


def test_card_after_an_iban_is_still_found() -> None:
    result = R.redact("IBAN DE89 3704 0044 0532 0130 00 4111 1111 1111 1111")
    assert result.text == "IBAN [REDACTED:iban] [REDACTED:card_number]"
    assert result.kinds == ("card_number", "iban")


def test_iban_followed_by_capitalised_words() -> None:
    result = R.redact("IBAN DE89 3704 0044 0532 0130 00 BIC COBADEFFXXX OK")
    assert result.text == "IBAN [REDACTED:iban] BIC COBADEFFXXX OK"


@pytest.mark.parametrize(
    "text",
    [
        "DE89 3704 0044 0532 0130 01",  # wrong check digits
        "GB82 WEST 1234 5698 7654 33",
        "AB12 3456 7890 1234 5678",  # not a country
        "ISO 9001 certified since 2015, model XJ12 ABCDEFGHIJKLMN",
    ],
)
def test_invalid_ibans_are_kept(text: str) -> None:
    assert_untouched(text)


# --------------------------------------------------------------------------------------------------
# US social security numbers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("SSN: 123-45-6789", "SSN: [REDACTED:ssn]"),
        ("Her social security number is 078-05-1120.", "Her social security number is [REDACTED:ssn]."),
        ("ssn=545-12-9876", "ssn=[REDACTED:ssn]"),
    ],
)
def test_ssn(text: str, expected: str) -> None:
    result = R.redact(text)
    assert result.text == expected
    assert result.kinds == ("ssn",)


@pytest.mark.parametrize(
    "text",
    [
        "000-12-3456",
        "666-12-3456",
        "912-34-5678",
        "123-00-4567",
        "123-45-0000",
        "123456789",
        "123 45 6789",
        "555-123-4567",
        "part 1-123-45-6789-0",
    ],
)
def test_not_an_ssn(text: str) -> None:
    assert_untouched(f"value {text} here")


# --------------------------------------------------------------------------------------------------
# custom patterns


def test_custom_pattern_without_secret_group_redacts_the_whole_match() -> None:
    redactor = Redactor([r"ACME-\d{6}"])
    result = assert_redacted("Ticket ACME-123456 and ACME-654321 are open", "ACME-123456", "custom", redactor)
    assert result.text == "Ticket [REDACTED:custom] and [REDACTED:custom] are open"
    assert result.count == 2
    assert result.kinds == ("custom",)


def test_custom_pattern_with_secret_group_redacts_only_the_group() -> None:
    redactor = Redactor([r"(?i)employee id:\s*(?P<secret>E\d+)"])
    result = redactor.redact("Employee ID: E42424, manager Employee id: E7")
    assert result.text == "Employee ID: [REDACTED:custom], manager Employee id: [REDACTED:custom]"
    assert result.count == 2


def test_several_custom_patterns_and_builtins_together() -> None:
    redactor = Redactor([r"\bproject-falcon\b", r"room (?P<secret>\d{3,4})\b"])
    result = redactor.redact("project-falcon meets in room 4012; password=hunter2")
    assert result.text == "[REDACTED:custom] meets in room [REDACTED:custom]; password=[REDACTED:password]"
    assert result.kinds == ("custom", "password")
    assert result.count == 3


def test_custom_patterns_run_last_and_do_not_touch_tokens() -> None:
    # A pattern that would match inside a token ("REDACTED", "api_key") finds nothing there.
    redactor = Redactor([r"REDACTED", r"api_key", r"[A-Z]{4,}"])
    result = redactor.redact(f"use {GITHUB_CLASSIC}")
    assert result.text == "use [REDACTED:api_key]"
    assert result.kinds == ("api_key",)


def test_custom_pattern_matching_empty_strings_is_harmless() -> None:
    redactor = Redactor([r"x*"])
    assert redactor.redact("abc xx def").text == "abc [REDACTED:custom] def"


def test_no_custom_patterns_means_no_custom_kind() -> None:
    assert "custom" not in Redactor().redact("ACME-123456").kinds
    assert Redactor([]).redact("ACME-123456").count == 0


@pytest.mark.parametrize("pattern", ["(", "[a-z", "(?P<secret>a", "*oops", "a{2,1}"])
def test_invalid_custom_pattern_raises_value_error(pattern: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        Redactor(["fine", pattern])
    message = str(excinfo.value)
    assert message.startswith(f"GUM_REDACT_PATTERNS: invalid regular expression {pattern!r}: ")
    assert len(message) > len(f"GUM_REDACT_PATTERNS: invalid regular expression {pattern!r}: ")


# --------------------------------------------------------------------------------------------------
# no false positives


@pytest.mark.parametrize(
    "text",
    [
        "Order #100234987 shipped; order number 4000-1234-5678.",
        "Invoice INV-2024-000123 is due on 2024-03-15.",
        "Meeting on 15.03.2024 at 14:30, then 2024-03-15T09:00:00Z and 11/04/2023.",
        "Released version 3.11.4; upgrade from v1.2.3 to 2.0.0-rc.1 (build 20240315.1).",
        "Reference number 1234 5678 9012 3456 (not a card).",
        "Tracking 1Z999AA10123456784 and account 000123456789",
        "=SUM(C4:F18) and =AVERAGE(B2:B200) in Sheet1!A1:Z99",
        "Revenue grew to $41,200 (up from 38,950), or €1.234.567,89 in total.",
        "commit 9fceb02d0ae598e95dc970b74767f19372d61af8 (HEAD -> main)",
        "Merge 3f2a1b7 into 1234567890abcdef1234567890abcdef12345678",
        "request id 123e4567-e89b-12d3-a456-426614174000 and 550e8400-e29b-41d4-a716-446655440000",
        "The skeleton crew used a skeleton key.",
        "Renew my passport: the passport office opens at 9.",
        "I store everything in a password manager; the password manager syncs daily.",
        "Use sk-learn for that, or sk-abc, or task-list, or risk-free desk-top.",
        "sk-learn-0-24-2-release-notes-for-machine-learning",
        "Tokens: the tokenizer splits text into tokens; token_count: 512",
        "Keyboard shortcuts: press the key to continue. Monkey: banana",
        "Author: Jane Doe; authority: city council; OAuth flow explained",
        "def login(user: str, password: str) -> bool:",
        "password_length: 12, password_hint: pets, passwordless: true",
        "Temperature 21.5°C, pressure 1013 hPa, humidity 45%.",
        "Unix time 1700000000 and in ms 1700000000000.",
        "ISBN 978-0-306-40615-7, ISSN 2049-3630",
        "IP 192.168.1.10:8080, IPv6 fe80::1ff:fe23:4567:890a",
        "Lat 52.520008, Lon 13.404954",
        "Secret Santa is on Friday. The secret of their success: hard work.",
        "Follow the steps: pass the ball, then shoot.",
        "public_key: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 alice@laptop",
        "AKIA is a prefix; ASIA is a continent. AIza is a Google prefix.",
        "hf_hub_download(repo_id='x') and npm_config_cache=/tmp/npm",
        "ghp_ is the GitHub token prefix, glpat- is GitLab's.",
        "eyJ is what base64 JSON starts with.",
        "",
    ],
)
def test_ordinary_text_is_untouched(text: str) -> None:
    assert_untouched(text)


def test_contacts_are_redacted_unless_turned_off() -> None:
    text = "Call me at +1 (415) 555-0132 or +49 30 12345678, fax 020 7946 0958, or mail alice@example.com."
    result = R.redact(text)
    assert result.text == ("Call me at [REDACTED:phone] or [REDACTED:phone], fax [REDACTED:phone], or mail "
                           "[REDACTED:email].")
    assert result.kinds == ("email", "phone")
    assert_untouched(text, Redactor(contacts=False))
    assert_untouched("Phone: 415-555-0132, mailto:alice@example.com", Redactor(contacts=False))


def test_long_ordinary_document_is_untouched() -> None:
    paragraph = (
        "Yesterday I reviewed the Q3 report in Excel (cells C4:F18, total $41,200) and replied to "
        "Maria about order 100234987 placed on 2024-03-15 at 14:30. The build for version 3.11.4 "
        "passed; commit 9fceb02d0ae598e95dc970b74767f19372d61af8 fixed the password manager import. "
        "Call +1 (415) 555-0132 before 5pm.\n"
    )
    assert_untouched(paragraph * 50, Redactor(contacts=False))
    assert R.redact(paragraph * 50).kinds == ("phone",)


# --------------------------------------------------------------------------------------------------
# idempotence and existing tokens

SECRET_SAMPLES = [
    pem("RSA"),
    pem("OPENSSH", end=False) + "tail",
    f"Authorization: Bearer {JWT}",
    f"OPENAI_API_KEY={OPENAI_PROJECT}\nANTHROPIC_API_KEY={ANTHROPIC}",
    f"{GITHUB_FINE} {GITLAB} {SLACK_BOT} {STRIPE_LIVE} {AWS_ACCESS_KEY_ID} {GOOGLE_API_KEY} {HUGGINGFACE} {NPM}",
    'curl -H "Authorization: Bearer abc123def456ghi789jkl" -u admin:hunter2 https://x.example.com',
    '{"password": "hunter2", "token": "abc", "client_secret": "x"}',
    "https://alice:s3cr3t@github.com/alice/repo.git",
    "Card 4111 1111 1111 1111 and 3782 822463 10005",
    "IBAN DE89 3704 0044 0532 0130 00",
    "SSN 123-45-6789",
    "password = [REDACTED:password] and token: [REDACTED:api_key]",
]


@pytest.mark.parametrize("text", SECRET_SAMPLES)
def test_redaction_is_idempotent(text: str) -> None:
    redactor = Redactor([r"ACME-\d+", r"id=(?P<secret>\w+)"])
    once = redactor.redact(text + " ACME-77 id=abc")
    twice = redactor.redact(once.text)
    assert twice.text == once.text
    assert twice.count == 0
    assert twice.kinds == ()


@pytest.mark.parametrize(
    "text",
    [
        "IBAN DE89 3704 0044 0532 0130 00ACME-1",
        "4111 1111 1111 1111 and 3782 822463 10005ACME-1password: hunter2",
        f"10005ACME-1password: hunter2Authorization: Bearer {JWT}",
    ],
)
def test_secrets_glued_together_are_idempotent(text: str) -> None:
    redactor = Redactor([r"ACME-\d+"])
    once = redactor.redact(text)
    assert "hunter2" not in once.text
    assert "0532" not in once.text
    assert redactor.redact(once.text).count == 0


@pytest.mark.parametrize(
    "text",
    [
        "[REDACTED:api_key]",
        "password=[REDACTED:password]",
        '{"password": "[REDACTED:password]"}',
        "https://alice:[REDACTED:password]@github.com/x.git",
        "Authorization: Bearer [REDACTED:jwt]",
        "card [REDACTED:card_number] exp 12/27",
    ],
)
def test_existing_tokens_are_left_alone(text: str) -> None:
    assert_untouched(text)


# --------------------------------------------------------------------------------------------------
# adversarial inputs: these must simply finish (no catastrophic backtracking)

ADVERSARIAL = {
    "letters": "a" * 200_000,
    "digits": "1" * 200_000,
    "spaced-digits": "1 " * 100_000,
    "dashed-groups": "4111-" * 40_000,
    "card-like": "4111 1111 1111 1112 " * 10_000,
    "begin-lines": "-----BEGIN " * 20_000,
    "begin-without-end": tok("-----BEGIN ", "PRIVATE KEY-----") * 8_000,
    "jwt-prefix": "eyJ" * 70_000,
    "jwt-dots": "eyJabcdefghijk." * 14_000,
    "sk-prefix": "sk-" * 70_000,
    "sk-hyphens": "sk-" + "a-" * 100_000,
    "colons": "a:" * 100_000,
    "equals": "a=" * 100_000,
    "password-equals": "password=" * 20_000,
    "password-quotes": 'password="' * 20_000,
    "keywords": "password secret token key auth pass " * 6_000,
    "long-key": "key" + "a" * 200_000,
    "scheme": "a://" * 50_000,
    "userinfo": "http://a:b" * 20_000,
    "userinfo-no-at": "a://b:" + "c" * 200_000,
    "iban-prefixes": "DE12 " * 40_000,
    "iban-unknown": "XY12 3456 7890 1234 5678 90 " * 7_000,
    "ssn-like": "123-45-" * 30_000,
    "bearer": "Bearer " * 30_000,
    "authorization": "Authorization: " * 15_000,
    "curl-user": "curl -u a:b " * 16_000,
    "quotes": '"' * 200_000,
    "token-marks": "[REDACTED:" * 20_000,
    "tokens": "[REDACTED:api_key]" * 10_000,
    "dotted-numbers": "1.2.3." * 40_000,
    "mixed": ("pass: [REDACTED:x] 4111 1111 1111 1111 DE89 sk-" + "x" * 30 + " ") * 3_000,
}


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_adversarial_input_finishes(name: str) -> None:
    text = ADVERSARIAL[name]
    result = Redactor([r"ACME-\d+"]).redact(text)
    assert isinstance(result.text, str)
    assert result.count >= 0

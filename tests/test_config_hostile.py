"""Hostile and careless configs: every bad value, file or encoding is one clear ConfigError
naming the key, the bad value and the fix, never a traceback; secrets never leak through
``attrs.asdict`` or a converter's unstructure."""

from __future__ import annotations

import json
import math
import tomllib
import typing
from pathlib import Path
from typing import Any

import attrs
import cattrs
import pytest
import test_mailing_support as support
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailfleet.cli.main import main
from mailfleet.clock import FakeClock
from mailfleet.config import (
    BouncesConfig,
    Config,
    Deployment,
    ServerConfig,
    converter,
    load_config,
    parse_config,
)
from mailfleet.errors import ConfigError, ConfigFileError
from mailfleet.mailbox.settings import resolve_mailbox
from mailfleet.plugins.manager import load_plugins
from mailfleet.plugins.providers import Limits
from mailfleet.secrets import Secret
from mailfleet.sending.fleet import Fleet
from mailfleet.sending.retry import RetryPolicy
from mailfleet.store.sqlite import SqliteStore
from mailfleet_testing.certs import TLSCerts
from mailfleet_testing.smtpd import FakeSMTP

certs = support.certs
servers = support.servers

SERVER = '[[servers]]\nname = "x"\nsender = "a@example.com"\nhost = "smtp.example.com"\n'


def write(tmp_path: Path, text: str | bytes, name: str = "mailfleet.toml") -> Path:
    path = tmp_path / name
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    return path


def load_problems(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        Fleet.from_file(path)
    return "\n".join(info.value.problems)


def parse_problems(doc: dict[str, Any], tmp_path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(doc, str(tmp_path / "mailfleet.toml"))
    return "\n".join(info.value.problems)


# -- the file itself -------------------------------------------------------------------------

def test_cp1251_config_is_refused_naming_the_encoding_and_the_fix(tmp_path: Path) -> None:
    text = SERVER.replace('name = "x"', 'name = "офис"\nsender_name = "Новости"')
    message = load_problems(write(tmp_path, text.encode("cp1251")))
    assert "not UTF-8" in message and "line 2" in message
    assert "CP1251" in message and "save it as UTF-8" in message


def test_binary_config_is_refused_as_binary(tmp_path: Path) -> None:
    message = load_problems(write(tmp_path, bytes(range(256)) * 4))
    assert "binary file" in message and "mailfleet.toml" in message


def test_latin1_config_is_refused_as_not_utf8(tmp_path: Path) -> None:
    message = load_problems(write(tmp_path, SERVER.replace('"x"', '"caf\xe9"').encode("latin-1")))
    assert "not UTF-8 text (byte 0xe9 on line 2); save it as UTF-8" in message


def test_utf8_config_with_a_bom_loads(tmp_path: Path) -> None:
    path = write(tmp_path, b"\xef\xbb\xbf" + SERVER.encode())
    assert Fleet.from_file(path).servers[0].name == "x"


def test_a_config_path_naming_a_directory_says_to_give_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError) as info:
        load_config(tmp_path)
    assert (info.value.path, info.value.reason) == (str(tmp_path), "directory")
    assert info.value.problems == [
        f"{tmp_path}: is a directory; give the config file itself, such as "
        f"{tmp_path / 'mailfleet.toml'}"]
    assert "--" not in str(info.value)  # the command line words its own option


def test_a_missing_config_file_is_reported_as_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError) as info:
        load_config(tmp_path / "nope.toml")
    assert info.value.reason == "missing" and "--" not in str(info.value)


@pytest.mark.parametrize("text", [
    "a = " + "9" * 5000,                                 # over Python's int-to-str limit
    "a = " + "[" * 3000 + "]" * 3000,                    # nesting past the recursion limit
    "a = " + "{b = " * 1000 + "1" + "}" * 1000,
], ids=["huge-integer", "nested-arrays", "nested-tables"])
def test_pathological_toml_is_a_config_error(tmp_path: Path, text: str) -> None:
    assert "not valid TOML" in load_problems(write(tmp_path, text))


@pytest.mark.parametrize("key", ["servers", "deployment", "retry"])
def test_a_deeply_nested_value_is_refused_without_printing_it(tmp_path: Path, key: str) -> None:
    text = f"{key}." + ".".join(["a"] * 5000) + " = 1\n"
    assert key in load_problems(write(tmp_path, text))


def test_deeply_nested_provider_options_are_refused(tmp_path: Path) -> None:
    text = SERVER + "options." + ".".join(["a"] * 50) + " = 1\n"
    assert "servers[0].options: nested more than 8 levels deep" in load_problems(
        write(tmp_path, text))


def test_hundreds_of_bad_values_give_a_bounded_report(tmp_path: Path) -> None:
    text = SERVER + "aliases = [" + ", ".join(["1"] * 900) + "]\n"
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    problems = info.value.problems
    assert len(problems) == 51 and problems[-1].endswith("... and 850 more problems")
    assert "servers[0].aliases[0]: expected a string (got 1)" in problems[0]


@pytest.mark.parametrize("text", [
    SERVER + "aliases = [" + ", ".join(['"a@example.com"'] * 20_000) + "]\n",
    "".join(SERVER.replace('"x"', f'"x{i}"') + "timeout = nan\n" for i in range(5000)),
], ids=["aliases", "servers"])
def test_arrays_are_bounded_and_refused_at_once(tmp_path: Path, text: str) -> None:
    import time

    start = time.monotonic()
    message = load_problems(write(tmp_path, text))
    assert "items; at most 1000 are allowed here" in message and len(message) < 500
    assert time.monotonic() - start < 5  # generous: the parse itself is well under a second


def test_a_huge_integer_value_is_refused_without_printing_it(tmp_path: Path) -> None:
    message = load_problems(write(tmp_path, SERVER + "timeout = " + "9" * 400 + "\n"))
    assert "servers[0].timeout: the number is far too large" in message
    assert len(message) < 400


# -- files the config names ------------------------------------------------------------------

def test_store_in_a_missing_directory_names_the_directory(tmp_path: Path) -> None:
    text = f'[deployment]\nstore = "{tmp_path}/absent/m.db"\n' + SERVER
    message = load_problems(write(tmp_path, text))
    assert f"deployment.store: the directory '{tmp_path}/absent' does not exist" in message
    assert "create it" in message


def test_relative_store_is_checked_beside_the_config(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    ok = write(tmp_path, '[deployment]\nstore = "data/m.db"\n' + SERVER)
    assert Fleet.from_file(ok).store_location == str(tmp_path / "data" / "m.db")
    bad = write(tmp_path, '[deployment]\nstore = "nodata/m.db"\n' + SERVER)
    assert "nodata' does not exist" in load_problems(bad)


def test_store_that_is_not_a_sqlite_database_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("my notes\n")
    message = load_problems(write(tmp_path, '[deployment]\nstore = "notes.txt"\n' + SERVER))
    assert f"deployment.store: '{tmp_path / 'notes.txt'}' is not a SQLite database" in message


@pytest.mark.parametrize(('store', 'expected'), [
    (".", "is a directory; name a file in it"),
    ("mysql://db.example.com/mail", "unsupported URL 'mysql'://"),
])
def test_store_that_is_a_directory_or_foreign_url_is_refused(tmp_path: Path, store: str,
                                                             expected: str) -> None:
    text = f'[deployment]\nstore = "{store}"\n' + SERVER
    assert "deployment.store: " in (message := load_problems(write(tmp_path, text)))
    assert expected in message


@pytest.mark.parametrize("table", ["server", "bounces"])
@pytest.mark.parametrize("kind", ["missing", "not-pem", "directory", "der"])
def test_bad_ca_file_is_refused_at_load_naming_the_key(tmp_path: Path, tls_certs: TLSCerts,
                                                       table: str, kind: str) -> None:
    import ssl

    ca = {"missing": tmp_path / "absent.pem", "directory": tmp_path,
          "not-pem": write(tmp_path, "just some text\n", "ca.pem"),
          "der": write(tmp_path, ssl.PEM_cert_to_DER_cert(tls_certs.ca_file.read_text()),
                       "ca.der")}[kind]
    line = f'ca_file = "{ca}"\n'
    text = (SERVER + line if table == "server" else
            SERVER + '[bounces]\nlogin = "b@example.com"\nhost = "imap.example.com"\n'
            'password_env = "P"\n' + line)
    message = load_problems(write(tmp_path, text))
    key = "servers[x].ca_file" if table == "server" else "bounces.ca_file"
    expected = {"missing": "does not exist", "directory": "is not a regular file",
                "not-pem": "holds no PEM certificate", "der": "openssl x509 -inform der"}
    assert f"{key}: '{ca}' " in message and expected[kind] in message


def test_a_real_pem_ca_file_loads(tmp_path: Path, tls_certs: TLSCerts) -> None:
    path = write(tmp_path, SERVER + f'ca_file = "{tls_certs.ca_file}"\n')
    assert Fleet.from_file(path).servers[0].ca_file == str(tls_certs.ca_file)


def test_relative_ca_and_password_files_are_found_beside_the_config_from_any_directory(
        tmp_path: Path, tls_certs: TLSCerts, monkeypatch: pytest.MonkeyPatch) -> None:
    etc, elsewhere = tmp_path / "etc", tmp_path / "elsewhere"
    etc.mkdir()
    elsewhere.mkdir()
    (etc / "ca.pem").write_text(tls_certs.ca_file.read_text())
    (etc / "pw").write_text("from-beside\n")
    monkeypatch.chdir(elsewhere)  # the operator runs mailfleet from another directory
    text = (SERVER + 'login = "a"\nca_file = "ca.pem"\npassword_file = "pw"\n'
            '[bounces]\nlogin = "b@example.com"\nhost = "imap.example.com"\n'
            'ca_file = "ca.pem"\npassword_file = "pw"\n')
    config = load_config(write(etc, text))
    assert config.servers[0].ca_file == config.bounces.ca_file == str(etc / "ca.pem")  # type: ignore[union-attr]
    server = Fleet(config, load_plugins(entry_points=False)).servers[0]
    password = server.password()
    assert password is not None and password.reveal() == "from-beside"
    # from memory (a host application's data) a relative path is the process's own
    (elsewhere / "pw").write_text("from-cwd\n")
    data = tomllib.loads(text.replace('"ca.pem"', f'"{tls_certs.ca_file}"'))
    own = Fleet(parse_config(data), load_plugins(entry_points=False)).servers[0].password()
    assert own is not None and own.reveal() == "from-cwd"


def test_non_utf8_password_file_names_the_file_not_the_content(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_bytes("пароль-секрет\n".encode("cp1251"))
    text = SERVER + f'login = "a"\npassword_file = "{secret}"\n'
    message = load_problems(write(tmp_path, text))
    assert f"servers[x].password_file: '{secret}' is not UTF-8 text" in message
    assert "save the password file as UTF-8" in message
    assert "пароль" not in message and "\xef" not in message


@pytest.mark.parametrize(('content', 'expected'), [
    (b"", "is empty"), (b"\n", "is empty"), (b"   \r\n", "is empty"),
    (b"one\ntwo\n", "holds more than one line"),
])
def test_empty_or_multiline_password_file_is_refused_at_load(tmp_path: Path, content: bytes,
                                                             expected: str) -> None:
    secret = tmp_path / "pw"
    secret.write_bytes(content)
    text = SERVER + f'login = "a"\npassword_file = "{secret}"\n'
    message = load_problems(write(tmp_path, text))
    assert f"servers[x].password_file: '{secret}' {expected}" in message


def test_missing_password_file_is_refused_at_load(tmp_path: Path) -> None:
    text = SERVER + f'login = "a"\npassword_file = "{tmp_path}/absent"\n'
    assert "servers[x].password_file: cannot read" in load_problems(write(tmp_path, text))


def test_password_file_is_still_read_at_use(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("first\n")
    server = Fleet.from_file(write(tmp_path, SERVER + f'password_file = "{secret}"\n')).servers[0]
    secret.write_text("")
    with pytest.raises(ConfigError, match=r"servers\[x\]\.password_file: .* is empty"):
        server.password()


def test_empty_password_variable_is_an_error_naming_the_variable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMPTY_PW", "")
    server = Fleet.from_file(write(tmp_path, SERVER + 'password_env = "EMPTY_PW"\n')).servers[0]
    with pytest.raises(ConfigError, match=r"servers\[x\]\.password_env: the environment "
                                          r"variable EMPTY_PW is empty"):
        server.password()
    monkeypatch.setenv("EMPTY_PW", "  ")
    with pytest.raises(ConfigError, match="EMPTY_PW is empty"):
        server.password()


def test_empty_password_variable_at_send_time_rests_the_server_and_the_next_one_sends(
        tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts,
        monkeypatch: pytest.MonkeyPatch) -> None:
    first, second, _ = servers
    monkeypatch.setenv("EMPTY_PW", "")
    entry = {**support.server_entry("a", first, certs), "password_env": "EMPTY_PW"}
    del entry["password"]
    db = tmp_path / "mailfleet.db"
    fleet = support.make_fleet([entry, support.server_entry("b", second, certs)], db)
    store, clock = SqliteStore(db), FakeClock()
    support.new_mailing(store, 3, clock)
    report = support.dispatcher(fleet, store, clock).run(until_idle=True)
    assert report.sent == 3 and first.messages == [] and len(second.messages) == 3
    assert dict(store.db.execute("SELECT state, count(*) FROM letters GROUP BY state")) == {
        "sent": 3}


# -- the cases of issue 15, one by one -------------------------------------------------------

@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e308", "0", "-1"])
def test_server_timeout_must_be_finite_and_positive(tmp_path: Path, value: str) -> None:
    message = load_problems(write(tmp_path, SERVER + f"timeout = {value}\n"))
    assert "servers[0].timeout: must be a finite number of seconds over 0" in message


def test_negative_bounce_timeout_is_refused(tmp_path: Path) -> None:
    text = SERVER + ('[bounces]\nlogin = "b@example.com"\nhost = "imap.example.com"\n'
                     'password_env = "P"\ntimeout = -5\n')
    assert "bounces.timeout: must be a finite number of seconds over 0 and at most 3600; " \
           "write e.g. 30 (got -5.0)" in load_problems(write(tmp_path, text))


def test_non_positive_limits_are_refused_all_at_once(tmp_path: Path) -> None:
    message = load_problems(write(tmp_path, SERVER + "limits = { per_hour = -1, per_day = 0 }\n"))
    assert "servers[0].limits.per_hour: must be a whole number from 1" in message
    assert "(got -1)" in message
    assert "servers[0].limits.per_day: must be a whole number from 1" in message
    assert "leave the key out for no limit" in message


def test_connections_are_bounded(tmp_path: Path) -> None:
    message = load_problems(write(tmp_path, SERVER + "connections = 100000\n"))
    assert "servers[0].connections: must be a whole number from 1 to 100" in message


def test_retry_attempts_and_backoff_must_be_positive(tmp_path: Path) -> None:
    text = SERVER + "[retry]\nmax_attempts = -1\nbackoff_initial = -60\nbackoff_max = -1\n"
    message = load_problems(write(tmp_path, text))
    assert "retry.max_attempts: must be a whole number from 1 to 100; write e.g. 5 (got -1)" \
        in message
    assert "retry.backoff_initial: must be a finite number of seconds from 0" in message
    assert "retry.backoff_max: must be a finite number of seconds from 0" in message


@pytest.mark.parametrize(('zone', 'expected'), [
    ("Mars/Olympus", "is not a known time zone"),
    ("../../etc/passwd", "is not a time zone name"),
    ("/etc/localtime", "is not a time zone name"),
    ("zone.tab", "is not a time zone name"),
])
def test_unknown_or_path_like_timezone_is_refused(tmp_path: Path, zone: str,
                                                  expected: str) -> None:
    text = SERVER + f'limits = {{ window = "calendar", timezone = "{zone}" }}\n'
    message = load_problems(write(tmp_path, text))
    assert f"servers[0].limits.timezone: {expected}" in message and "Europe/Moscow" in message


@pytest.mark.parametrize(('name', 'expected'), [
    ('""', "must not be empty"), ('"   "', "must not be empty"),
    ('"a\\nb"', "holds the control or line-break character U+000A"),
    ('"a\\rb"', "holds the control or line-break character U+000D"),
])
def test_empty_or_multiline_server_name_is_refused(tmp_path: Path, name: str,
                                                   expected: str) -> None:
    message = load_problems(write(tmp_path, SERVER.replace('"x"', name)))
    assert f"servers[0].name: {expected}" in message


@pytest.mark.parametrize("text", ['servers = "x"', "servers = 5", 'servers = { name = "x" }',
                                  'servers = ["x"]'])
def test_servers_that_are_not_an_array_of_tables_name_the_form(tmp_path: Path,
                                                               text: str) -> None:
    message = load_problems(write(tmp_path, text + "\n"))
    assert "servers" in message and "object has no attribute" not in message
    assert "[[servers]]" in message or "[[key]]" in message or "expected a table" in message


@pytest.mark.parametrize("char", ["\u2028", "\u2029", "\u0085", "\x0b", "\x0c", "\x1e"])
def test_line_separators_and_controls_in_sender_name_are_refused(tmp_path: Path,
                                                                 char: str) -> None:
    text = SERVER + f"sender_name = {json.dumps(f'News{char}Letter')}\n"
    message = load_problems(write(tmp_path, text))
    assert f"servers[0].sender_name: holds the control or line-break character " \
           f"U+{ord(char):04X}" in message


# -- every numeric and string key, range-checked ---------------------------------------------

BASE: dict[str, Any] = {
    "deployment": {},
    "servers": [{"name": "x", "kind": "internal", "sender": "a@example.com"}],
    "bounces": {"login": "b@example.com", "host": "imap.example.com", "password_env": "P"},
    "retry": {},
}
NUL_LINE = "a\nb"
# (table, key, bad values, a good value)
RANGES: list[tuple[str, str, list[Any], Any]] = [
    ("deployment", "store", ["", NUL_LINE], "m.db"),
    ("servers[0]", "name", ["", " ", NUL_LINE, "a\u2028b", "n" * 65], "office"),
    ("servers[0]", "sender", ["", "a@example.com\r\nBcc: x@example.com"], "b@example.com"),
    ("servers[0]", "provider", ["", NUL_LINE], "internal_smtp"),
    ("servers[0]", "tenant", ["", NUL_LINE, "t" * 65], "acme"),
    ("servers[0]", "sender_name", ["\x1e", "a\u0085b", "\u202eevil", "n" * 257], "News"),
    ("servers[0]", "host", ["", "smtp example.com", "smtp://h.example.com", NUL_LINE],
     "mx.example.com"),
    ("servers[0]", "port", [0, -1, 65536], 2525),
    ("servers[0]", "login", ["", NUL_LINE], "user"),
    ("servers[0]", "password_env", ["", "$PW", "A B", "A=B"], "PW"),
    ("servers[0]", "password_file", ["", NUL_LINE], None),
    ("servers[0]", "password", ["", " ", NUL_LINE], "pw"),
    ("servers[0]", "timeout", [0, -1.0, math.nan, math.inf, 1e308, 3601], 300),
    ("servers[0]", "aliases", [[NUL_LINE], [""]], ["b@example.com"]),
    ("servers[0]", "priority", [-1, 10**7], 5),
    ("servers[0]", "connections", [0, 101, 100000], 10),
    ("servers[0]", "letters_per_connection", [0, -1, 10**7], 50),
    ("servers[0]", "ca_file", ["", NUL_LINE], None),
    ("servers[0].limits", "per_minute", [0, -1, 10**10], 10),
    ("servers[0].limits", "per_hour", [0, -1, 10**10], 100),
    ("servers[0].limits", "per_day", [0, -1, 10**10], 1000),
    ("servers[0].limits", "recipients_per_letter", [0, 100_001], 50),
    ("servers[0].limits", "timezone", ["", "Nowhere/City", "../x", "UTC\n"], "Europe/Moscow"),
    ("bounces", "host", ["", "imap example.com", "a@b"], "mail.example.com"),
    ("bounces", "port", [0, 70000], 993),
    ("bounces", "provider", ["", NUL_LINE], "yandex"),
    ("bounces", "login", ["", NUL_LINE], "c@example.com"),
    ("bounces", "password_env", ["", "1PW", "P-W"], "PW2"),
    ("bounces", "password_file", ["", NUL_LINE], None),
    ("bounces", "password", ["", "a\x00b"], "pw"),
    ("bounces", "folder", ["", NUL_LINE, "f" * 256], "Bounces"),
    ("bounces", "move_to", ["", "a\u2029b"], "Done"),
    ("bounces", "timeout", [0, math.nan, -math.inf, 1e9], 60),
    ("bounces", "ca_file", ["", NUL_LINE], None),
    ("bounces", "soft_bounce_limit", [0, -3, 1001], 5),
    ("bounces", "soft_bounce_window_days", [0, 3651], 7),
    ("retry", "max_attempts", [0, -1, 101], 3),
    ("retry", "backoff_initial", [-1, math.nan, math.inf, 1e308], 0),
    ("retry", "backoff_multiplier", [0.5, 0, math.nan, 101], 1.5),
    ("retry", "backoff_max", [-1, math.inf], 600),
    ("retry", "connect_attempts", [0, 21], 1),
    ("retry", "connect_backoff", [-0.5, 3601, math.nan], 0.5),
    ("retry", "server_rest_seconds", [-1, math.inf], 0),
    ("retry", "breaker_seconds", [-1, math.nan, math.inf], 30),
    ("retry", "server_rest_max", [-1, math.inf], 3600),
    ("deployment", "lease_seconds", [0, 0.4, -1, math.nan, math.inf, 86_401], 15),
    ("retry", "max_server_failures", [0, 10_001], 1),
    ("retry", "store_retry_seconds", [-1, 3601, math.nan, math.inf], 0),
]
RANGE_CASES = [(t, k, bad) for t, k, bads, _ in RANGES for bad in bads]


def with_value(table: str, key: str, value: Any) -> dict[str, Any]:
    doc = json.loads(json.dumps(BASE))
    target: dict[str, Any] = doc["servers"][0] if table.startswith("servers") else doc[table]
    if table.endswith(".limits"):
        target = target.setdefault("limits", {})
    target[key] = value
    return doc


@pytest.mark.parametrize(('table', 'key', 'bad'), RANGE_CASES,
                         ids=[f"{t}.{k}={b!r}"[:60] for t, k, b in RANGE_CASES])
def test_every_config_value_out_of_range_names_the_key_and_the_fix(
        tmp_path: Path, table: str, key: str, bad: Any) -> None:
    message = parse_problems(with_value(table, key, bad), tmp_path)
    assert f"{table}.{key}: " in message
    line = next(p for p in message.splitlines() if f"{table}.{key}: " in p)
    problem, _, fix = line.split(f"{table}.{key}: ", 1)[1].partition("; ")
    assert problem and "(got " in fix and fix.split(" (got ")[0]  # problem; fix (got value)


@pytest.mark.parametrize(('table', 'key', 'good'), [(t, k, g) for t, k, _, g in RANGES
                                              if g is not None])
def test_every_config_value_in_range_loads(tmp_path: Path, table: str, key: str,
                                           good: Any) -> None:
    parse_config(with_value(table, key, good), str(tmp_path / "mailfleet.toml"))


def test_the_range_table_covers_every_numeric_and_string_key() -> None:
    """A key added to a config table without a range rule fails here (``options`` belongs to
    the provider plugin, which validates it)."""
    tables = {"deployment": Deployment, "servers[0]": ServerConfig,
              "servers[0].limits": Limits, "bounces": BouncesConfig, "retry": RetryPolicy}
    checked = {(t, k) for t, k, _, _ in RANGES}
    missing = []
    for table, cls in tables.items():
        hints = typing.get_type_hints(cls)
        for field in attrs.fields(cls):
            parts = set(typing.get_args(hints[field.name])) or {hints[field.name]}
            if parts & {int, float, str, Secret, tuple[str, ...], dict[str, Any]} and \
                    (table, field.name) not in checked | {("servers[0]", "options")}:
                missing.append(f"{table}.{field.name}")
    assert missing == []


def test_source_is_set_by_the_loader_not_by_the_file(tmp_path: Path) -> None:
    message = load_problems(write(tmp_path, 'source = "/etc/elsewhere.toml"\n' + SERVER))
    assert "source: unknown key; allowed keys here: deployment, servers, bounces, retry" \
        in message


def test_passwords_of_the_wrong_type_are_not_echoed(tmp_path: Path) -> None:
    doc = with_value("servers[0]", "password", 98765432)
    message = parse_problems(doc, tmp_path)
    assert "servers[0].password: expected a string" in message and "98765432" not in message


def test_out_of_range_password_shows_only_a_mask(tmp_path: Path) -> None:
    message = parse_problems(with_value("bounces", "password", "sec\nret"), tmp_path)
    assert "bounces.password: holds a line break" in message
    assert "sec" not in message.replace("seconds", "")


def test_a_bad_store_url_does_not_show_its_password(tmp_path: Path) -> None:
    doc = with_value("deployment", "store", "postgresql://mail:s3cr3t-pw@db.example.com/m\n")
    message = parse_problems(doc, tmp_path)
    assert "deployment.store: holds the control or line-break character U+000A" in message
    assert "s3cr3t" not in message and "postgresql://mail:***@db.example.com" in message


def test_a_megabyte_value_gives_a_short_error(tmp_path: Path) -> None:
    message = parse_problems(with_value("servers[0]", "name", "n" * 1_000_000), tmp_path)
    assert "servers[0].name: is longer than 64 characters" in message
    assert len(message) < 500


def test_models_built_in_python_are_checked_too() -> None:
    with pytest.raises(ConfigError, match=r"timeout: must be a finite number .* \(got nan\)"):
        ServerConfig(name="x", sender="a@example.com", timeout=math.nan)
    with pytest.raises(ConfigError, match="soft_bounce_limit"):
        BouncesConfig(soft_bounce_limit=0)


# -- the command line ------------------------------------------------------------------------

def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exit_.value.code or 0), out, err


def test_cli_prints_each_config_problem_as_one_line_with_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, SERVER + "timeout = nan\nconnections = 0\n")
    code, out, err = run_cli(capsys, "--config", str(path), "servers", "list")
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) == 2 and all(line.startswith(f"mailfleet: {path}: servers[0].")
                                   for line in lines)
    assert "timeout" in lines[0] and "connections" in lines[1]
    assert "Traceback" not in err


def test_cli_prints_config_errors_as_json_under_json(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "--config", str(tmp_path), "servers", "list", "--json")
    assert code == 2 and err == ""
    data = json.loads(out)
    assert {k: data[k] for k in ("ok", "error", "problems")} == {
        "ok": False, "error": "config", "problems": [
        f"{tmp_path}: is a directory; pass the config file itself, such as "
        f"--config {tmp_path / 'mailfleet.toml'}"]}


def test_cli_names_its_config_option_for_a_missing_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "--config", str(tmp_path / "nope.toml"), "servers", "list")
    assert code == 2 and out == ""
    assert err == (f"mailfleet: {tmp_path / 'nope.toml'}: no such file; pass --config PATH or "
                   f"set MAILFLEET_CONFIG\n")


def test_cli_on_a_cp1251_config_exits_2_with_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, SERVER.replace('"x"', '"офис"').encode("cp1251"))
    code, _, err = run_cli(capsys, "--config", str(path), "servers", "list")
    assert code == 2 and len(err.splitlines()) == 1 and "CP1251" in err


# -- secrets through generic walks -----------------------------------------------------------

def secret_config(tmp_path: Path) -> Fleet:
    return Fleet(parse_config({
        "servers": [{"name": "e", "sender": "a@example.com", "host": "smtp.example.com",
                     "login": "a", "password": "hunter2-secret", "security": "ssl"}],
        "bounces": {"login": "b@example.com", "host": "imap.example.com",
                    "password": "hunter2-secret"}}, str(tmp_path / "mailfleet.toml")))


def test_asdict_and_unstructure_never_return_an_inline_password(tmp_path: Path) -> None:
    fleet = secret_config(tmp_path)
    assert fleet.config.bounces is not None
    mailbox = resolve_mailbox(fleet.config.bounces, fleet.plugins)
    objects = [fleet.config, fleet.config.servers[0], fleet.servers[0], fleet.config.bounces,
               mailbox, fleet.servers[0].secret, mailbox.secret]
    walks = [attrs.asdict, attrs.astuple, converter.unstructure,
             cattrs.Converter().unstructure]
    for obj in objects:
        for walk in walks:
            out = walk(obj)
            assert "hunter2" not in repr(out), (type(obj).__name__, walk)
            assert "hunter2" not in json.dumps(out, default=str), (type(obj).__name__, walk)
    assert converter.unstructure(fleet.config.servers[0])["password"] == "***"
    assert mailbox.password().reveal() == "hunter2-secret"


def test_secret_compares_copies_and_pickles_without_showing_itself() -> None:
    import copy
    import pickle

    secret = Secret("hunter2")
    assert secret == Secret("hunter2") and secret != Secret("other")
    assert copy.deepcopy(secret) == secret
    assert pickle.loads(pickle.dumps(secret)).reveal() == "hunter2"  # noqa: S301
    assert "hunter2" not in repr(secret) + str(secret) + f"{secret}"
    with pytest.raises(AttributeError):
        secret._value = "x"  # type: ignore[misc]


# -- fuzz: whatever the document, the loader answers with a config or a ConfigError ----------

PLUGINS = load_plugins()
FIELDS = {cls: [f.name for f in attrs.fields(cls)]
          for cls in (Config, Deployment, ServerConfig, BouncesConfig, Limits, RetryPolicy)}
PLAUSIBLE = [v for _, _, bads, good in RANGES for v in [*bads, good] if v is not None] + [
    "ssl", "starttls", "none", "internal", "external", "imap", "pop3", "calendar", "rolling",
    "gmail", "yandex", "mailru", "rambler", "a@gmail.com", "b@yandex.ru", "ru", "en", True,
    False, "password", "xoauth2", "move", "delete", 25, 465, 587]
SCALARS = st.one_of(
    st.sampled_from(PLAUSIBLE), st.booleans(), st.text(max_size=20),
    st.integers(min_value=-(2**70), max_value=2**70), st.floats(),
    st.datetimes(), st.dates(), st.times(), st.none())
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.sampled_from(FIELDS[ServerConfig]) | st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


def table(cls: type) -> st.SearchStrategy[dict[str, Any]]:
    """Mostly real keys with plausible values (so the range rules and the resolution are
    reached), sometimes anything at all."""
    plausible = st.dictionaries(st.sampled_from(FIELDS[cls]), st.sampled_from(PLAUSIBLE),
                                max_size=4)
    wild = st.dictionaries(st.sampled_from(FIELDS[cls]) | st.text(max_size=6),
                           SCALARS | VALUES, max_size=6)
    return plausible | wild


SERVER_TABLE = st.builds(
    lambda base, t, limits: {**base, **t, **limits},
    st.just({}) | st.just({"name": "x", "kind": "internal", "sender": "a@example.com"}),
    table(ServerConfig), st.just({}) | st.builds(lambda lim: {"limits": lim}, table(Limits)))
DOCUMENTS = st.fixed_dictionaries({}, optional={
    "deployment": table(Deployment) | VALUES, "servers": st.lists(SERVER_TABLE, max_size=3) |
    VALUES, "bounces": table(BouncesConfig) | VALUES, "retry": table(RetryPolicy) | VALUES,
    "source": VALUES, "extra": VALUES})


def problems_or_none(load: Any) -> list[str] | None:
    """``None`` when ``load()`` gives a usable fleet, else the ConfigError's problems (any
    other exception escapes and fails the test)."""
    try:
        Fleet(load(), PLUGINS)
    except ConfigError as exc:
        return exc.problems
    return None


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DOCUMENTS)
def test_fuzzed_documents_give_a_config_or_a_config_error(doc: dict[str, Any]) -> None:
    problems = problems_or_none(lambda: parse_config(doc, "<fuzz>"))
    if problems is not None:
        assert problems and all(p and "\n" not in p for p in problems)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=600) | st.builds(
    lambda text, at, junk: (text[:at] + junk + text[at:]).encode("utf-8", "surrogatepass"),
    st.just(SERVER + "timeout = 10\nlimits = { per_hour = 5 }\n[retry]\nmax_attempts = 2\n"),
    st.integers(min_value=0, max_value=120), st.text(max_size=12)))
def test_fuzzed_files_give_a_config_or_a_config_error(tmp_path: Path, data: bytes) -> None:
    path = write(tmp_path, data)
    problems = problems_or_none(lambda: load_config(path))
    if problems is not None:
        assert problems and all(p and "\n" not in p for p in problems)

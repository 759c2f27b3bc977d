"""Configuration: the documented example loads; every bad key is named with its fix."""

from __future__ import annotations

import textwrap
import tomllib
from pathlib import Path

import pytest

from mailfleet.config import load_config, parse_config
from mailfleet.errors import ConfigError
from mailfleet.plugins.providers import Security
from mailfleet.sending.fleet import Fleet

EXAMPLE = textwrap.dedent('''
    [deployment]
    saas = false
    store = "mailfleet.db"                 # a path (SQLite) or, later, postgresql://...

    [[servers]]
    name = "office"
    kind = "external"
    provider = "yandex"                    # optional: detected from the login or sender domain
    sender = "news@example.ru"
    sender_name = "Example News"
    host = "smtp.yandex.ru"                # optional where the provider has presets
    port = 465                             # optional likewise
    security = "ssl"                       # ssl | starttls | none
    login = "news@example.ru"
    password_env = "OFFICE_SMTP_PASSWORD"
    allow_sender_override = false
    priority = 1
    limits = { per_hour = 100, per_day = 500 }

    [[servers]]
    name = "local"
    kind = "internal"
    sender = "news@example.com"
    priority = 2

    [bounces]
    protocol = "imap"                      # imap | pop3
    host = "imap.yandex.ru"
    port = 993
    security = "ssl"
    login = "bounces@example.ru"
    password_env = "BOUNCES_PASSWORD"
    folder = "INBOX"
''')


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mailfleet.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(text: str, tmp_path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        Fleet.from_file(write(tmp_path, text))
    return str(info.value)


def test_documented_example_loads_as_written(tmp_path: Path) -> None:
    fleet = Fleet.from_file(write(tmp_path, EXAMPLE))
    office, local = fleet.servers
    assert (office.name, office.provider, office.host, office.port, office.security) == (
        "office", "yandex", "smtp.yandex.ru", 465, Security.SSL)
    assert office.limits.per_hour == 100 and office.limits.per_day == 500
    assert office.allow_sender_override is False
    assert (local.kind, local.host, local.port, local.security, local.login) == (
        "internal", "localhost", 25, Security.NONE, None)
    assert fleet.config.bounces is not None and fleet.config.bounces.folder == "INBOX"


def test_config_path_comes_from_environment(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILFLEET_CONFIG", str(write(tmp_path, EXAMPLE)))
    assert len(load_config().servers) == 2


def test_unknown_key_is_named_with_the_allowed_keys(tmp_path: Path) -> None:
    text = EXAMPLE.replace('priority = 2', 'priority = 2\nprioritty = 3')
    message = problems_of(text, tmp_path)
    assert "servers[1].prioritty: unknown key" in message
    assert "priority" in message.split("prioritty: unknown key", 1)[1]


def test_bad_values_name_key_value_and_expected_form() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"servers": [{"name": "a", "sender": "a@example.com", "port": "465",
                                   "security": "tls", "limits": {"per_day": 1.5}}]})
    message = str(info.value)
    assert "servers[0].port: expected an integer (got '465')" in message
    assert "servers[0].security: expected one of ssl, starttls, none (got 'tls')" in message
    assert "servers[0].limits.per_day: expected an integer (got 1.5)" in message


def test_missing_required_key_is_reported() -> None:
    with pytest.raises(ConfigError, match=r"servers\[0\]\.sender: required key is missing"):
        parse_config({"servers": [{"name": "a"}]})


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[deployment\n"))


def test_missing_config_file_says_how_to_point_at_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="MAILFLEET_CONFIG"):
        load_config(tmp_path / "absent.toml")


def test_saas_refuses_user_server_on_port_25_and_suggests_465_or_587(tmp_path: Path) -> None:
    text = textwrap.dedent('''
        [deployment]
        saas = true
        [[servers]]
        name = "user"
        sender = "a@example.com"
        host = "smtp.example.com"
        port = 25
    ''')
    message = problems_of(text, tmp_path)
    assert "servers[user].port: port 25 is not allowed" in message
    assert "465" in message and "587" in message


def test_saas_allows_the_operator_default_server_on_port_25(tmp_path: Path) -> None:
    text = textwrap.dedent('''
        [deployment]
        saas = true
        [[servers]]
        name = "operator"
        sender = "a@example.com"
        host = "smtp.example.com"
        port = 25
        operator_default = true
    ''')
    assert Fleet.from_file(write(tmp_path, text)).servers[0].port == 25


def test_auth_over_plain_connection_is_refused_unless_allowed(tmp_path: Path) -> None:
    text = textwrap.dedent('''
        [[servers]]
        name = "plain"
        sender = "a@example.com"
        host = "smtp.example.com"
        security = "none"
        login = "a"
        password_env = "X"
    ''')
    assert "AUTH over an unencrypted connection is refused" in problems_of(text, tmp_path)
    allowed = text + "allow_insecure_auth = true\n"
    assert Fleet.from_file(write(tmp_path, allowed)).servers[0].allow_insecure_auth


def test_external_server_without_host_or_preset_names_the_key(tmp_path: Path) -> None:
    text = '[[servers]]\nname = "x"\nsender = "a@example.com"\n'
    assert "servers[x].host: required" in problems_of(text, tmp_path)


def test_bad_sender_address_is_refused(tmp_path: Path) -> None:
    text = '[[servers]]\nname = "x"\nkind = "internal"\nsender = "not-an-address"\n'
    assert "servers[x].sender" in problems_of(text, tmp_path)


def test_duplicate_server_names_are_refused(tmp_path: Path) -> None:
    one = '[[servers]]\nname = "x"\nkind = "internal"\nsender = "a@example.com"\n'
    assert "names must be unique" in problems_of(one + one, tmp_path)


def test_all_problems_are_reported_together(tmp_path: Path) -> None:
    text = ('[[servers]]\nname = "x"\nsender = "bad"\n'
            '[[servers]]\nname = "y"\nsender = "a@example.com"\n')
    message = problems_of(text, tmp_path)
    assert "servers[x].sender" in message and "servers[y].host" in message


def test_preset_fills_host_port_security_and_login_from_provider(tmp_path: Path) -> None:
    text = ('[[servers]]\nname = "g"\nsender = "someone@gmail.com"\n'
            'password_env = "GMAIL_APP_PASSWORD"\n')
    server = Fleet.from_file(write(tmp_path, text)).servers[0]
    assert (server.provider, server.host, server.port, server.security, server.login) == (
        "gmail", "smtp.gmail.com", 465, Security.SSL, "someone@gmail.com")


def test_provider_is_detected_from_login_domain_before_sender_domain(tmp_path: Path) -> None:
    text = ('[[servers]]\nname = "m"\nsender = "news@example.com"\nlogin = "me@mail.ru"\n'
            'aliases = ["news@example.com"]\npassword_env = "P"\n')
    assert Fleet.from_file(write(tmp_path, text)).servers[0].provider == "mailru"


def test_unknown_domain_uses_generic_provider(tmp_path: Path) -> None:
    text = '[[servers]]\nname = "e"\nsender = "a@example.com"\nhost = "smtp.example.com"\n'
    server = Fleet.from_file(write(tmp_path, text)).servers[0]
    assert (server.provider, server.port, server.security) == ("generic", 587, Security.STARTTLS)


def test_unknown_explicit_provider_lists_installed_ones(tmp_path: Path) -> None:
    text = ('[[servers]]\nname = "e"\nsender = "a@example.com"\nhost = "h.example.com"\n'
            'provider = "hotmail"\n')
    message = problems_of(text, tmp_path)
    assert "unknown provider 'hotmail'" in message and "gmail" in message


def test_password_is_hidden_from_repr_and_errors(tmp_path: Path) -> None:
    text = ('[[servers]]\nname = "e"\nsender = "a@example.com"\nhost = "smtp.example.com"\n'
            'login = "a"\npassword = "hunter2-secret"\nsecurity = "ssl"\n')
    fleet = Fleet.from_file(write(tmp_path, text))
    server = fleet.servers[0]
    assert "hunter2" not in repr(fleet.config) and "hunter2" not in repr(server)
    password = server.password()
    assert password is not None and password.reveal() == "hunter2-secret"
    assert "hunter2" not in repr(password) and "hunter2" not in str(password)


def test_missing_password_variable_names_the_key_and_the_fix(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    monkeypatch.delenv("ABSENT_PW", raising=False)
    text = ('[[servers]]\nname = "e"\nsender = "a@example.com"\nhost = "smtp.example.com"\n'
            'login = "a"\npassword_env = "ABSENT_PW"\n')
    server = Fleet.from_file(write(tmp_path, text)).servers[0]
    with pytest.raises(ConfigError, match=r"servers\[e\]\.password_env: .*ABSENT_PW"):
        server.password()


def test_password_file_is_read_at_use(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    text = ('[[servers]]\nname = "e"\nsender = "a@example.com"\nhost = "smtp.example.com"\n'
            f'login = "a"\npassword_file = "{secret}"\n')
    password = Fleet.from_file(write(tmp_path, text)).servers[0].password()
    assert password is not None and password.reveal() == "from-file"


def test_saas_refuses_a_user_internal_server_even_without_its_plugin(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILFLEET_DISABLE_PLUGINS", "internal_smtp")
    text = ('[deployment]\nsaas = true\n'
            '[[servers]]\nname = "local"\nkind = "internal"\nsender = "a@example.com"\n')
    message = problems_of(text, tmp_path)
    assert "servers[local].kind" in message and "operator_default" in message


def test_readme_config_examples_load_as_written() -> None:
    import re

    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```toml\n(.*?)```", readme, re.S)
    assert len(blocks) >= 2
    fleet = Fleet(parse_config(tomllib.loads(blocks[0]), "README"))
    assert [s.name for s in fleet.servers] == ["office", "local"]
    assert fleet.servers[0].host == "smtp.yandex.ru"  # a preset: the README leaves it out
    extra = parse_config(tomllib.loads(blocks[1]), "README")
    assert extra.bounces is not None and extra.bounces.verp and extra.retry.max_attempts == 5

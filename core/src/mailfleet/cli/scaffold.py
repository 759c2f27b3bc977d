"""``mailfleet plugin new NAME``: a ready provider-plugin project that installs and passes its
tests as written (docs/plugins.md walks through filling it in and publishing it)."""

from __future__ import annotations

import re
from pathlib import Path

from mailfleet.errors import PluginError

_NAME = re.compile(r"^[a-z][a-z0-9_]{1,30}$")

_PYPROJECT = '''\
[build-system]
requires = ["hatchling>=1.24"]
build-backend = "hatchling.build"

[project]
name = "mailfleet-{dist}"
version = "0.1.0"
description = "mailfleet provider plugin: {title}."
readme = "README.md"
requires-python = ">=3.11"
license = "MIT"
dependencies = ["mailfleet>=0.1"]

[project.optional-dependencies]
# The fixtures (real servers on 127.0.0.1) and the provider conformance suite.
test = ["mailfleet-testing>=0.1", "pytest>=8"]

# The entry-point name is the provider id users write in config: provider = "{name}".
[project.entry-points.mailfleet]
{name} = "mailfleet_{name}"

[tool.hatch.build.targets.wheel]
packages = ["src/mailfleet_{name}"]

[tool.pytest.ini_options]
testpaths = ["tests"]
'''

_MODULE = '''\
"""mailfleet provider plugin for {title} (entry point ``{name}``).

Import only from :mod:`mailfleet.plugin`: it is mailfleet's public plugin API. Every hook
and its contract: mailfleet's docs/hooks.md, or ``python -m pydoc mailfleet.hookspecs``.
"""

from __future__ import annotations

from mailfleet.plugin import (
    Classification,
    Diagnosis,
    Endpoint,
    Limits,
    ProviderInfo,
    ReplyRule,
    Security,
    Server,
    SmtpError,
    Stage,
    hookimpl,
    match_rules,
)

#: What the provider is. Replace the example values with the provider's published settings.
PROVIDER = ProviderInfo(
    id="{name}",  # must equal the entry-point name in pyproject.toml
    name="{title}",
    domains=("{name}.example",),  # addresses at these domains use this provider
    hosts=(),  # extra SMTP host names that identify it (the preset hosts already do)
    smtp=(Endpoint("smtp.{name}.example", 465, Security.SSL),
          Endpoint("smtp.{name}.example", 587, Security.STARTTLS)),
    imap=(Endpoint("imap.{name}.example", 993, Security.SSL),),
    pop3=(Endpoint("pop.{name}.example", 995, Security.SSL),),
    login="address",  # the login is the full address ("localpart": the part before @)
    auth=("password",),  # "password", "app_password", "xoauth2"
    limits=Limits(per_day=500),  # the provider's published sending limits
    sender_substitution=True,  # False: only the mailbox and its aliases may send
)

#: The provider's replies and what they mean; each needs an English and a Russian text.
RULES = (
    ReplyRule(
        r"daily sending limit", Classification.QUOTA, reason="exceedlimit",
        block_seconds=24 * 3600,
        summary={{"en": "{title}'s daily sending limit of {{login}} is spent",
                  "ru": "дневной лимит отправки {{login}} исчерпан"}},
        next_step={{"en": "mailfleet rests this server for 24 hours and uses the next one",
                    "ru": "mailfleet делает паузу для сервера на 24 часа и использует "
                          "следующий"}}),
    ReplyRule(
        r"authentication failed", Classification.SERVER, stages=frozenset({{Stage.AUTH}}),
        reason="authfailure",
        summary={{"en": "{title} refused the login {{login}}",
                  "ru": "{title} отклонил вход {{login}}"}},
        next_step={{"en": "check the login and the password (password_env or password_file)",
                    "ru": "проверьте логин и пароль (password_env или password_file)"}}),
)


@hookimpl
def mailfleet_provider() -> ProviderInfo:
    """Declare the provider (called once when mailfleet loads its plugins)."""
    return PROVIDER


@hookimpl
def mailfleet_diagnose(server: Server, error: SmtpError, locale: str) -> Diagnosis | None:
    """Explain a failure of this provider's server; ``None`` lets the core's generic rules
    answer."""
    return match_rules(RULES, server, error, locale)


@hookimpl
def mailfleet_validate_server(server: Server) -> list[str] | None:
    """Objections to a server's config, each naming the key and the fix; ``None``: none."""
    if server.port == 25:
        return [f"servers[{{server.name}}].port: {title} takes no mail on port 25; use 465 "
                f"(security = \\"ssl\\") or 587 (security = \\"starttls\\")"]
    return None

# More hooks (docs/hooks.md): mailfleet_sender_policy, mailfleet_prepare_letter,
# mailfleet_sign_letter, mailfleet_connect, mailfleet_send, mailfleet_parse_bounce.
'''

_TEST = '''\
"""mailfleet's provider conformance suite, run against this plugin on local fixture servers."""

from typing import ClassVar

from mailfleet_testing.conformance import ProviderConformance, Replies


class Test{cls}Conformance(ProviderConformance):
    provider_id = "{name}"
    mailbox = "someone@{name}.example"
    # The provider's own texts for the standard failures (the others use typical replies).
    replies: ClassVar[Replies] = {{
        "wrong_password": ("AUTH", "535 5.7.8 Authentication failed"),
        "quota": ("MAIL", "550 5.4.5 Daily sending limit exceeded"),
    }}
'''

_README = '''\
# mailfleet-{dist}

A [mailfleet](https://pypi.org/project/mailfleet/) provider plugin for {title}: its presets,
login rule, limits, sender rule and the meaning of its replies.

    pip install mailfleet-{dist}

Then a server needs only its sender (`sender = "someone@{name}.example"`), or name the
provider explicitly with `provider = "{name}"`. `mailfleet plugins` lists it.

## Developing

    python -m venv .venv && .venv/bin/pip install -e ".[test]"
    .venv/bin/python -m pytest

The tests run mailfleet's provider conformance suite (`mailfleet_testing.conformance`)
against real servers on 127.0.0.1. Fill `PROVIDER` and `RULES` in
`src/mailfleet_{name}/__init__.py` with the provider's published settings and reply texts,
and list the provider's own reply texts in the test class (`replies = {{...}}`).

## Publishing

    python -m pip install build twine
    python -m build && python -m twine upload dist/*
'''


def plugin_project(name: str, directory: Path) -> Path:
    """Write the project ``mailfleet-NAME`` under ``directory``; return its folder."""
    if not _NAME.match(name):
        raise PluginError(f"plugin name {name!r}: use 2-31 lower-case letters, digits or _, "
                          f"starting with a letter (it becomes the provider id and the "
                          f"package mailfleet_{name})")
    dist = name.replace("_", "-")
    root = directory / f"mailfleet-{dist}"
    if root.exists():
        raise PluginError(f"{root} already exists; choose another name or directory")
    title = name.replace("_", " ").title()
    values = {"name": name, "dist": dist, "title": title, "cls": title.replace(" ", "")}
    files = {
        "pyproject.toml": _PYPROJECT,
        f"src/mailfleet_{name}/__init__.py": _MODULE,
        f"tests/test_{name}_conformance.py": _TEST,
        "README.md": _README,
    }
    for relative, template in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(**values), encoding="utf-8")
    return root

"""Templates: plain fields keep the precompiled path, defaults and conditions go through
Jinja2's sandbox, malformed tags and header-unsafe values are refused once, before queueing;
URLs go out in ASCII (IDNA host, percent-encoded)."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest

from mailfleet.errors import HeaderError, TemplateError
from mailfleet.mailings.mailing import create_mailing
from mailfleet.mailings.message import build_letter
from mailfleet.mailings.template import CompiledTemplate, DateCache, Template, _Body, analyse
from mailfleet.store.sqlite import SqliteStore


def render(template: Template, fields: dict[str, str]) -> email.message.EmailMessage:
    template = template.checked()
    compiled = CompiledTemplate(template, from_addr="news@example.net")
    raw = compiled.render(to="to@dest.test", fields={**fields, "email": "to@dest.test"},
                          letter_id="m1-1", message_id="<m1-1@example.net>",
                          date=DateCache()(1_700_000_000))
    assert raw.isascii()
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


def body(message: email.message.EmailMessage, kind: str = "plain") -> str:
    part = message.get_body((kind,))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


def test_plain_field_templates_keep_the_precompiled_path() -> None:
    html = "<style>@media (max-width:600px){.x{width:100%}}</style><p>{{ name }}</p>"
    compiled = CompiledTemplate(Template(subject="Hi {{ name }}", text="Dear {{ name }}",
                                         html=html), from_addr="n@example.net")
    assert isinstance(compiled._text, _Body) and isinstance(compiled._html, _Body)
    assert analyse("Dear {{ Имя }}").plain


def test_defaults_and_conditions_render_with_empty_cells_as_missing() -> None:
    template = Template(
        subject='Hello {{ name | default("customer") }}',
        text='Dear {{ name | default("customer") }}{% if company %} of {{ company }}{% endif %}.',
        html='<p>{{ name | default("customer") }}{% if company %} ({{ company }}){% endif %}</p>')
    full = render(template, {"name": "Ann <3", "company": "Acme & Co"})
    assert full["Subject"] == "Hello Ann <3"
    assert body(full).strip() == "Dear Ann <3 of Acme & Co."
    assert "Ann &lt;3 (Acme &amp; Co)" in body(full, "html")
    empty = render(template, {"name": "", "company": ""})
    assert empty["Subject"] == "Hello customer" and body(empty).strip() == "Dear customer."
    assert template.required_fields == frozenset()


def test_cyrillic_merge_fields_are_personalised() -> None:
    message = render(Template(subject="{{ Имя }}, скидка", text="Здравствуйте, {{ Имя }}!"),
                     {"Имя": "Иван"})
    assert message["Subject"] == "Иван, скидка" and "Здравствуйте, Иван!" in body(message)


@pytest.mark.parametrize(("text", "where"), [("Hi {{ name }", "text: line 1"),
                                             ("Hi\n{% if x %}open", "text: line 2"),
                                             ("{{ a b }}", "text: line 1"),
                                             ("a\n\nHi { name }}", "text: line 3")])
def test_malformed_tags_are_refused_naming_key_and_line(text: str, where: str) -> None:
    with pytest.raises(TemplateError, match=where):
        Template.from_dict({"subject": "s", "text": text})


@pytest.mark.parametrize("text", ["{{ name.__class__.__mro__[1].__subclasses__() }}",
                                  "{% for i in range(99999) %}{{ i }}{% endfor %}",
                                  "{{ name * 100000000 }}", '{{ name | center(999999999) }}',
                                  "{% include 'x' %}"])
def test_loops_calls_attributes_arithmetic_and_big_filters_are_refused(text: str) -> None:
    with pytest.raises(TemplateError, match=r"text: line 1: .* cannot be used in a mailing"):
        Template.from_dict({"subject": "s", "text": text})


def test_a_value_the_template_cannot_render_is_a_row_error_at_creation(tmp_path: Path) -> None:
    template = Template(subject="s", text="{% if name > 3 %}big{% endif %}")
    created = create_mailing(SqliteStore(tmp_path / "s.db"), template,
                             [{"email": "a@dest.test", "name": "x"}], skip_bad_rows=True)
    [bad] = created.rejected
    assert "text cannot be rendered: TypeError" in bad.reason


def test_a_non_ascii_unsubscribe_url_goes_out_idna_and_percent_encoded() -> None:
    template = Template.from_dict({"subject": "s", "text": "t",
                                   "unsubscribe_url": "https://пример.рф/отписка?e={{ email }}"})
    assert template.unsubscribe_url == (
        "https://xn--e1afmkfd.xn--p1ai/%D0%BE%D1%82%D0%BF%D0%B8%D1%81%D0%BA%D0%B0?e={{ email }}")
    message = render(template, {})
    assert message["List-Unsubscribe"] == (
        "<https://xn--e1afmkfd.xn--p1ai/%D0%BE%D1%82%D0%BF%D0%B8%D1%81%D0%BA%D0%B0"
        "?e=to%40dest.test>")


@pytest.mark.parametrize("char", ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1e"])
def test_line_separators_and_controls_are_refused_in_every_header_value(char: str,
                                                                         tmp_path: Path) -> None:
    for data in ({"subject": f"a{char}b", "text": "t"},
                 {"subject": "s", "text": "t", "sender_name": f"x{char}"},
                 {"subject": "s", "text": "t", "unsubscribe_url": f"https://a.example/{char}"}):
        with pytest.raises(TemplateError, match=f"U\\+{ord(char):04X}"):
            Template.from_dict(data)
    with pytest.raises(HeaderError, match=f"U\\+{ord(char):04X}"):
        build_letter(from_addr="a@example.net", to="b@example.net", subject=f"x{char}",
                     text="t")
    created = create_mailing(SqliteStore(tmp_path / "s.db"),
                             Template(subject="Hi {{ name }}", text="t"),
                             [{"email": "a@dest.test", "name": f"A{char}"}],
                             skip_bad_rows=True)
    [bad] = created.rejected
    assert bad.column == "name" and f"U+{ord(char):04X}" in bad.reason


WIRE_VALUES = ["Anna", "", ".dot first", "a.b", "line\nbreak", "bare\rcr", "x" * 300,
               "Привет." * 40, ".Привет", "Ünïcode", "tab\there"]


@pytest.mark.parametrize("html", [None, "<p>{{ name }}</p>\n.{{ name }}\n"])
@pytest.mark.parametrize("text", ["Hi {{ name }}\n{{ name }}.\n", "Привет {{ name }}\n",
                                  "ok\n.{{ name }}\n", "{{ name }}\n" * 3])
def test_a_letter_said_wire_ready_needs_no_line_end_repair_and_no_dot_stuffing(
        text: str, html: str | None) -> None:
    from mailfleet.smtp.client import dot_stuff, to_crlf
    compiled = CompiledTemplate(Template(subject="S {{ name }}", text=text, html=html,
                                         sender="a@example.com"), from_addr="a@example.com")
    seen = set()
    for value in WIRE_VALUES:
        data, ready = compiled.render_wire(to="b@example.org", fields={"name": value},
                                           letter_id="m1-1", message_id="<m1-1@example.com>",
                                           date=b"Thu, 01 Jan 2026 00:00:00 +0000")
        seen.add(ready)
        if ready:  # the client trusts the flag: it must be exactly what the scans would say
            assert to_crlf(data) == data
            assert dot_stuff(data) == data + b".\r\n"
    if html is None and "." not in text:
        assert True in seen  # plain values are trusted: the scans are skipped for them

"""The parts of Drive's request language the emulator understands: `q`, `fields`, `orderBy`.

Modelled on what Drive v3 accepts (developers.google.com/drive/api/guides/search-files):
``q`` takes ``and``/``or``/``not`` and parentheses, ``'ID' in parents``, ``name`` and
``mimeType`` with ``=``, ``!=`` and ``contains``, ``trashed`` with ``=``/``!=``, and
``createdTime``/``modifiedTime`` comparisons; strings are single-quoted with ``\\'`` and
``\\\\`` escapes. Anything else is rejected the way Drive rejects it (400 ``invalid``,
location ``q``), so provider code with a quoting bug fails here as it would in production.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["QueryError", "order_key", "parse_fields", "parse_order", "parse_q", "select_fields"]

Predicate = Callable[[Mapping[str, Any]], bool]


class QueryError(ValueError):
    """A request parameter Drive would refuse; ``location`` names it (``q``, ``fields``)."""

    def __init__(self, message: str, location: str) -> None:
        super().__init__(message)
        self.location = location


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^'\\]|\\.)*')
      | (?P<op>!=|<=|>=|=|<|>)
      | (?P<paren>[()])
      | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)

_STRING_FIELDS = {"name", "mimeType"}
_TIME_FIELDS = {"createdTime", "modifiedTime"}
_BOOL_FIELDS = {"trashed", "starred", "sharedWithMe"}


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str


def _unquote(text: str, q: str) -> str:
    body = text[1:-1]
    out = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            if i + 1 >= len(body) or body[i + 1] not in "'\\":
                raise QueryError(f"Invalid Value: bad escape in {q!r}", "q")
            out.append(body[i + 1])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _tokens(q: str) -> list[_Tok]:
    pos = 0
    out: list[_Tok] = []
    while pos < len(q):
        if q[pos:].strip() == "":
            break
        match = _TOKEN.match(q, pos)
        if match is None:
            raise QueryError(f"Invalid Value: cannot parse q near {q[pos:pos + 20]!r}", "q")
        kind = match.lastgroup or ""
        out.append(_Tok(kind, match.group(kind)))
        pos = match.end()
    return out


class _Parser:
    """Recursive descent: or-expr := and-expr ('or' and-expr)*; and-expr := unary
    ('and' unary)*; unary := 'not' unary | '(' or-expr ')' | comparison."""

    def __init__(self, q: str) -> None:
        self.q = q
        self.toks = _tokens(q)
        self.i = 0

    def fail(self, why: str) -> QueryError:
        return QueryError(f"Invalid Value: {why} in q={self.q!r}", "q")

    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise self.fail("unexpected end")
        self.i += 1
        return tok

    def word(self, text: str) -> bool:
        tok = self.peek()
        if tok is not None and tok.kind == "word" and tok.text.lower() == text:
            self.i += 1
            return True
        return False

    def parse(self) -> Predicate:
        if not self.toks:
            return lambda item: True
        pred = self.or_expr()
        if self.peek() is not None:
            raise self.fail(f"unexpected {self.peek().text!r}")  # type: ignore[union-attr]
        return pred

    def or_expr(self) -> Predicate:
        parts = [self.and_expr()]
        while self.word("or"):
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else (lambda item: any(p(item) for p in parts))

    def and_expr(self) -> Predicate:
        parts = [self.unary()]
        while self.word("and"):
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else (lambda item: all(p(item) for p in parts))

    def unary(self) -> Predicate:
        if self.word("not"):
            inner = self.unary()
            return lambda item: not inner(item)
        tok = self.peek()
        if tok is not None and tok.kind == "paren" and tok.text == "(":
            self.i += 1
            inner = self.or_expr()
            close = self.take()
            if close.text != ")":
                raise self.fail("missing ')'")
            return inner
        return self.comparison()

    def comparison(self) -> Predicate:
        first = self.take()
        if first.kind == "string":
            value = _unquote(first.text, self.q)
            if not self.word("in"):
                raise self.fail("expected 'in' after a string")
            target = self.take()
            if target.kind != "word" or target.text != "parents":
                raise self.fail(f"unsupported collection {target.text!r}")
            return lambda item: value in item["parents_for_query"]
        if first.kind != "word":
            raise self.fail(f"unexpected {first.text!r}")
        field = first.text
        if field in _BOOL_FIELDS:
            op = self.take()
            if op.text not in ("=", "!="):
                raise self.fail(f"operator {op.text!r} not allowed for {field}")
            literal = self.take()
            if literal.kind != "word" or literal.text.lower() not in ("true", "false"):
                raise self.fail(f"{field} compares with true or false")
            wanted = literal.text.lower() == "true"
            if op.text == "=":
                return lambda item: bool(item.get(field)) == wanted
            return lambda item: bool(item.get(field)) != wanted
        if field in _STRING_FIELDS:
            op = self.take()
            if op.kind == "word" and op.text == "contains":
                value = self.string()
                return lambda item: value.lower() in str(item.get(field, "")).lower()
            if op.text not in ("=", "!="):
                raise self.fail(f"operator {op.text!r} not allowed for {field}")
            value = self.string()
            if op.text == "=":
                return lambda item: item.get(field) == value
            return lambda item: item.get(field) != value
        if field in _TIME_FIELDS:
            op = self.take()
            if op.kind != "op":
                raise self.fail(f"expected a comparison after {field}")
            value = self.string()
            compare = {
                "=": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
                "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
            }[op.text]
            return lambda item: compare(item.get(field, ""), value)
        raise self.fail(f"unknown field {field!r}")

    def string(self) -> str:
        tok = self.take()
        if tok.kind != "string":
            raise self.fail(f"expected a quoted string, got {tok.text!r}")
        return _unquote(tok.text, self.q)


def parse_q(q: str) -> Predicate:
    """A predicate over an item's JSON (plus ``parents_for_query``), or QueryError."""
    return _Parser(q).parse()


def parse_fields(spec: str) -> dict[str, Any] | None:
    """``"nextPageToken, files(id,name)"`` -> ``{"nextPageToken": None, "files": {"id":
    None, "name": None}}``; None for ``*`` (everything)."""
    spec = spec.strip()
    if spec in ("", "*"):
        return None
    pos = 0

    def parse_list(end: str) -> dict[str, Any]:
        nonlocal pos
        out: dict[str, Any] = {}
        while pos < len(spec):
            match = re.compile(r"\s*([A-Za-z_*][A-Za-z0-9_/]*)\s*").match(spec, pos)
            if match is None:
                raise QueryError(f"Invalid field selection {spec!r}", "fields")
            name = match.group(1)
            pos = match.end()
            sub: Any = None
            if pos < len(spec) and spec[pos] == "(":
                pos += 1
                sub = parse_list(")")
                if pos >= len(spec) or spec[pos] != ")":
                    raise QueryError(f"Invalid field selection {spec!r}", "fields")
                pos += 1
            head, _, rest = name.partition("/")
            if rest:
                sub = {rest: sub}
            out[head] = None if name == "*" else sub
            while pos < len(spec) and spec[pos] == " ":
                pos += 1
            if pos < len(spec) and spec[pos] == ",":
                pos += 1
                continue
            if end and pos < len(spec) and spec[pos] == end:
                return out
            if pos < len(spec):
                raise QueryError(f"Invalid field selection {spec!r}", "fields")
        return out

    return parse_list("")


def select_fields(value: Any, selection: dict[str, Any] | None) -> Any:
    """Keep only the selected keys (recursively; lists are filtered element-wise)."""
    if selection is None or "*" in selection:
        return value
    if isinstance(value, list):
        return [select_fields(v, selection) for v in value]
    if not isinstance(value, dict):
        return value
    return {k: select_fields(value[k], sub) for k, sub in selection.items() if k in value}


_ORDER_KEYS = {"createdTime", "modifiedTime", "name", "folder", "name_natural"}


def parse_order(spec: str) -> list[tuple[str, bool]]:
    """``"folder,createdTime desc"`` -> ``[("folder", False), ("createdTime", True)]``."""
    out = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        words = part.split()
        if words[0] not in _ORDER_KEYS or len(words) > 2 or (len(words) == 2 and words[1] != "desc"):
            raise QueryError(f"Invalid Value: orderBy {spec!r}", "orderBy")
        out.append((words[0], len(words) == 2))
    return out


def order_key(item: Mapping[str, Any], key: str) -> Any:
    if key == "folder":
        return 0 if item.get("mimeType") == "application/vnd.google-apps.folder" else 1
    if key == "name_natural":
        return item.get("name", "")
    return item.get(key, "")

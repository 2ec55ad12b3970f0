"""The parser of the canonical string form: `parse` reads what ``str(edge_set)`` writes.

A table of the selectors and their parameters (`_SELECTORS`) drives a tokenizer and a
recursive-descent parser; every error names the column, underlines the offending text and
says what would have been accepted there.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from emg_lens.edges import named, selectors
from emg_lens.edges.algebra import EdgeSet
from emg_lens.errors import ArgumentError, SpecError, check_type, checked


# ============================================================================ selector table
@dataclass(frozen=True)
class _Param:
    name: str
    kind: str  # "group", "int", "number", "flag", "ints" (any number of ints), "region", "names"
    default: Any = None  # None: required

    def __str__(self) -> str:  # as the selector's signature writes it
        if self.kind in _VARIADIC:
            return f"{self.name},..."
        plain = self.kind == _FLAG or self.default is None
        return self.name if plain else f"{self.name}={self.default}"


@dataclass(frozen=True)
class _Selector:
    name: str
    factory: Callable[..., EdgeSet]
    params: tuple[_Param, ...] = ()

    @property
    def signature(self) -> str:
        return f"{self.name}({','.join(map(str, self.params))})" if self.params else self.name


_GROUP, _INT, _FLAG, _INTS, _REGION, _NAMES = "group", "int", "flag", "ints", "region", "names"
_NUMBER, _ENDS = "number", ("start", "stop")  # a number: an int, or a decimal (seconds)
_VARIADIC = (_INTS, _NAMES)  # any number of positional values, no keywords
_ACCEPTED = {  # what a value of each kind of parameter may be, in words (a flag: by its name)
    _GROUP: "a group name (an identifier such as emg, acc or cls)",
    _INT: "a non-negative integer",
    _INTS: "a non-negative integer",
    _NUMBER: "a non-negative number",
}
_SELECTORS: dict[str, _Selector] = {
    s.name: s
    for s in (
        _Selector("all_edges", selectors.all_edges),
        _Selector(
            "between",
            selectors.between,
            (_Param("query_group", _GROUP), _Param("key_group", _GROUP)),
        ),
        _Selector(
            "between_regions",
            named.between_regions,
            (_Param("query_region", _REGION), _Param("key_region", _REGION)),
        ),
        _Selector("channels", named.channels, (_Param("name", _NAMES),)),
        _Selector("cross_channel", selectors.cross_channel),
        _Selector("cross_modal", selectors.cross_modal, (_Param("include_cls", _FLAG, False),)),
        _Selector("cross_region", named.cross_region),
        _Selector("from_cls", selectors.from_cls),
        _Selector("heads", selectors.heads, (_Param("index", _INTS),)),
        _Selector("layers", selectors.layers, (_Param("index", _INTS),)),
        _Selector("no_edges", selectors.no_edges),
        _Selector("reads_earlier", selectors.reads_earlier),
        _Selector("reads_later", selectors.reads_later),
        _Selector("same_channel", selectors.same_channel),
        _Selector(
            "time_span",
            selectors.time_span,
            (
                *(_Param(f"{side}_{end}", _NUMBER) for side in ("query", "key") for end in _ENDS),
                _Param("seconds", _FLAG, False),
            ),
        ),
        _Selector(
            "time_window",
            selectors.time_window,
            (_Param("max_lag", _INT), _Param("min_lag", _INT, 0)),
        ),
        _Selector("to_cls", selectors.to_cls),
        _Selector("unimodal", selectors.unimodal, (_Param("include_cls", _FLAG, False),)),
        _Selector("within", selectors.within, (_Param("group", _GROUP),)),
        _Selector("within_region", named.within_region, (_Param("region", _REGION),)),
    )
}

_KNOWN_SELECTORS = ", ".join(s.signature for s in _SELECTORS.values())
_EXPECT_OPERAND = f"a selector ({_KNOWN_SELECTORS}), '~' or '('"
_OPERATORS = "an operator ('|', '&', '-')"
_EXPECT_OPERATOR = f"{_OPERATORS} or the end of the expression"
_ARGUMENT = ("name", "int", "string")  # the tokens a selector's argument or its value may be

# A quoted group name ('emg' or "emg", as Python would write it) is a "string" token; an
# unterminated quote is a "bad" character. "+" joins the names of a region argument.
_TOKEN_RE = re.compile(
    r"\s*(?:(?P<name>[^\W\d]\w*)|(?P<int>\d+(?:\.\d+)?(?:e-?\d+)?)|(?P<string>'[^'\n]*'|\"[^\"\n]*\")"
    r"|(?P<punct>[()|&~,=+-])|(?P<bad>\S))"
)


@dataclass(frozen=True)
class _Token:
    kind: str  # "name", "int", "string", "punct", "bad", "end", or "union" (a+b: its parts)
    text: str
    start: int
    parts: tuple[_Token, ...] = ()

    @property
    def end(self) -> int:
        return self.start + max(len(self.text), 1)

    def describe(self) -> str:
        return "end of expression" if self.kind == "end" else repr(self.text)


def _tokenize(expr: str) -> list[_Token]:
    tokens = []
    pos = 0
    while True:
        m = _TOKEN_RE.match(expr, pos)
        if m is None:  # only trailing whitespace is left
            break
        kind = m.lastgroup
        assert kind is not None
        tokens.append(_Token(kind, m.group(kind), m.start(kind)))
        pos = m.end()
    tokens.append(_Token("end", "", len(expr)))
    return tokens


class _Parser:
    """Recursive descent over ``expr := term (("|" | "-") term)*``, ``term := factor ("&"
    factor)*``, ``factor := "~" factor | "(" expr ")" | selector ["(" args ")"]``."""

    def __init__(self, expr: str):
        self.expr = expr
        self.tokens = _tokenize(expr)
        self.i = 0

    # ------------------------------------------------------------------ helpers
    def peek(self) -> _Token:
        return self.tokens[self.i]

    def advance(self) -> _Token:
        tok = self.tokens[self.i]
        if tok.kind != "end":
            self.i += 1
        return tok

    def at(self, *texts: str) -> bool:
        tok = self.peek()
        return tok.kind == "punct" and tok.text in texts

    def fail(self, message: str, start: int, end: int, expected: str) -> SpecError:
        shown = "".join(" " if c.isspace() else c for c in self.expr)
        width = max(end - start, 1)
        column = start + 1
        return SpecError(
            f"invalid edge expression {self.expr!r} at column {column}: {message}\n"
            f"    {shown}\n"
            f"    {' ' * start}{'^' * width}\n"
            f"expected {expected}",
            expression=self.expr,
            column=column,
        )

    def fail_at(self, tok: _Token, message: str, expected: str) -> SpecError:
        return self.fail(message, tok.start, tok.end, expected)

    def require(self, accepts: tuple[str, ...], where: str, expected: str) -> _Token:
        """The next token, which must be of one of the kinds, or one of the punctuation marks,
        ``accepts`` names: else ``unexpected <it> <where>`` at it, ``expected`` shown."""
        tok = self.advance()
        if tok.kind not in accepts and not (tok.kind == "punct" and tok.text in accepts):
            raise self.fail_at(tok, f"unexpected {tok.describe()} {where}".rstrip(), expected)
        return tok

    # ------------------------------------------------------------------ grammar
    def parse(self) -> EdgeSet:
        if self.peek().kind == "end":
            raise self.fail_at(self.peek(), "the expression is empty", _EXPECT_OPERAND)
        result = self.expression()
        self.require(("end",), "", _EXPECT_OPERATOR)
        return result

    def expression(self) -> EdgeSet:
        left = self.term()
        while self.at("|", "-"):
            op = self.advance().text
            right = self.term()
            left = left | right if op == "|" else left - right
        return left

    def term(self) -> EdgeSet:
        left = self.factor()
        while self.at("&"):
            self.advance()
            left = left & self.factor()
        return left

    def factor(self) -> EdgeSet:
        tok = self.advance()
        if tok.kind == "punct" and tok.text == "~":
            return ~self.factor()
        if tok.kind == "punct" and tok.text == "(":
            inner = self.expression()
            opened = f"inside the '(' opened at column {tok.start + 1}"
            self.require((")",), opened, f"')' or {_OPERATORS}")
            return inner
        if tok.kind == "name":
            return self.selector(tok)
        what = f"character {tok.text!r}" if tok.kind == "bad" else tok.describe()
        raise self.fail_at(tok, f"unexpected {what}", _EXPECT_OPERAND)

    def selector(self, name_tok: _Token) -> EdgeSet:
        sel = _SELECTORS.get(name_tok.text)
        if sel is None:
            close = difflib.get_close_matches(name_tok.text, list(_SELECTORS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            unknown = f"unknown selector {name_tok.text!r}{hint}"
            raise self.fail_at(name_tok, unknown, f"a selector: {_KNOWN_SELECTORS}")
        positional, keywords, end = self.arguments(sel, name_tok)
        args, kwargs = self.bind(sel, name_tok, positional, keywords, end)
        try:
            return sel.factory(*args, **kwargs)
        except ArgumentError as err:
            raise self.fail(str(err), name_tok.start, end, sel.signature) from None

    def arguments(
        self, sel: _Selector, name_tok: _Token
    ) -> tuple[list[_Token], list[tuple[_Token, _Token]], int]:
        """The optional ``(...)`` after a selector's name, not yet checked against its
        parameters: the positional tokens, the keyword (name, value) tokens, and the offset
        where the selector ends."""
        positional: list[_Token] = []
        keywords: list[tuple[_Token, _Token]] = []
        if not self.at("("):
            return positional, keywords, name_tok.end
        open_tok = self.advance()
        if self.at(")"):
            return positional, keywords, self.advance().end
        where, expected = f"in the arguments of {sel.name}", f"the arguments of {sel.signature}"
        while True:
            arg = self.require(_ARGUMENT, where, expected)
            if arg.kind == "name" and self.at("="):
                self.advance()
                value_expected = f"a value for {arg.text} in {sel.signature}"
                value = self.require(_ARGUMENT, f"after '{arg.text}='", value_expected)
                keywords.append((arg, self.union(value, sel)))
            elif keywords:
                raise self.fail_at(arg, "positional argument follows keyword argument", expected)
            else:
                positional.append(self.union(arg, sel))
            opened = f"{where}, whose '(' is at column {open_tok.start + 1}"
            sep = self.require((",", ")"), opened, f"',' or ')' (the form is {sel.signature})")
            if sep.text == ")":
                return positional, keywords, sep.end

    def union(self, first: _Token, sel: _Selector) -> _Token:
        """``first`` and the names joined to it with ``+`` (a region: ``C3+Cz+C4``) as one
        "union" token; ``first`` alone when no ``+`` follows."""
        if not self.at("+"):
            return first
        parts = [first]
        while self.at("+"):
            self.advance()
            expected = f"a channel or region name (C3, frontal, 'EEG Fp1') in {sel.signature}"
            parts.append(self.require(("name", "string"), "after '+'", expected))
        text = self.expr[first.start : parts[-1].end]
        return _Token("union", text, first.start, tuple(parts))

    def bind(
        self,
        sel: _Selector,
        name_tok: _Token,
        positional: list[_Token],
        keywords: list[tuple[_Token, _Token]],
        end: int,
    ) -> tuple[list[Any], dict[str, Any]]:
        """Check the arguments against ``sel.params``: positional and keyword values."""
        params = {p.name: p for p in sel.params}
        if sel.params and sel.params[0].kind in _VARIADIC:
            if keywords:
                raise self.fail_at(keywords[0][0], f"{sel.name} takes no keyword", sel.signature)
            # none at all: the selector's function says what it needs (heads(0), channels(C3))
            return [self.value(sel, sel.params[0], t, positional=True) for t in positional], {}
        if len(positional) > (n := len(sel.params)):
            many = f"{sel.name} takes {n} argument{'s' if n != 1 else ''}, got {len(positional)}"
            raise self.fail_at(positional[n], many, sel.signature)
        values: dict[str, Any] = {}
        for param, tok in zip(sel.params, positional):
            values[param.name] = self.value(sel, param, tok, positional=True)
        for key_tok, value_tok in keywords:
            named = params.get(key := key_tok.text)
            if named is None:
                expected = f"{sel.signature} (keywords: {', '.join(params) or 'none'})"
                raise self.fail_at(key_tok, f"{sel.name} has no argument {key!r}", expected)
            if named.name in values:  # a keyword given twice, or one a positional gave
                raise self.fail_at(key_tok, f"{sel.name} got {key!r} twice", sel.signature)
            values[named.name] = self.value(sel, named, value_tok, positional=False)
        for param in sel.params:
            if param.name not in values and param.default is None:
                missing = f"{sel.name} is missing its argument {param.name!r}"
                raise self.fail(missing, name_tok.start, end, sel.signature)
        return [], values

    def value(self, sel: _Selector, param: _Param, tok: _Token, *, positional: bool) -> Any:
        if param.kind == _REGION:  # a tuple: the selector takes each part as one name
            return tuple(self.name_value(sel, param, part) for part in tok.parts or (tok,))
        if tok.kind == "union":
            one = f"{sel.name}: {param.name} takes one value, not names joined with '+'"
            raise self.fail_at(tok, one, f"one value for {param.name} in {sel.signature}")
        kind, text = tok.kind, tok.text
        if param.kind == _NAMES:
            return self.name_value(sel, param, tok)
        if param.kind == _GROUP and kind == "name":
            return text
        if param.kind == _GROUP and kind == "string" and text[1:-1].isidentifier():
            return text[1:-1]  # quoted as in Python: between("emg", "acc")
        if param.kind == _NUMBER and kind == "int":
            return int(text) if text.isdigit() else float(text)
        if param.kind in (_INT, _INTS) and kind == "int" and text.isdigit():
            return int(text)
        if param.kind == _FLAG and positional and kind == "name" and text == param.name:
            return True
        if param.kind == _FLAG and not positional and text in ("true", "True", "false", "False"):
            return text in ("true", "True")
        flag = f"true or false ({param.name}, or {param.name}=true|false)"
        accepted = _ACCEPTED.get(param.kind, flag)
        got = f"{sel.name}: {param.name} must be {accepted}, got {text!r}"
        raise self.fail_at(tok, got, f"{accepted} in {sel.signature}")

    def name_value(self, sel: _Selector, param: _Param, tok: _Token) -> str:
        """A channel or region name: bare, or quoted as in Python (any text but empty)."""
        if tok.kind == "name":
            return tok.text
        if tok.kind == "string" and tok.text[1:-1].strip():
            return tok.text[1:-1]
        bad = f"{sel.name}: {param.name} must be a channel or region name, got {tok.text!r}"
        raise self.fail_at(tok, bad, f"a name (C3, frontal, 'EEG Fp1', '1') in {sel.signature}")


@checked
def parse(expr: str | EdgeSet) -> EdgeSet:
    """Parse the string form of an edge set (an `EdgeSet` is returned as is).

    The grammar is the one ``str(edge_set)`` writes: selector names as in Python (zero-argument
    selectors with or without ``()``), arguments as in Python (``time_window(3, min_lag=1)``,
    ``unimodal(include_cls)`` or ``unimodal(include_cls=true)``), group names bare or quoted
    as in Python (``between(emg, acc)``, ``between('emg', "acc")``; the string form writes them
    bare), channel and region names bare or quoted (``channels(C3, 'EEG Fp1')``; the string
    form quotes only those that are not identifiers), a region's names joined with ``+``
    (``between_regions(C3+C4, frontal)``), and
    ``~`` over ``&`` over ``|``/``-`` (left-associative). ``parse(str(e)) == e`` for every
    edge set ``e``. A bad expression raises `SpecError` naming the column.

    >>> parse("~(within(emg) | to_cls) & heads(1)")
    EdgeSet('~(within(emg) | to_cls) & heads(1)')
    >>> parse("cross_modal & foo")
    Traceback (most recent call last):
    ...
    emg_lens.errors.SpecError: invalid edge expression 'cross_modal & foo' at column 15: unknown selector 'foo'
        cross_modal & foo
                      ^^^
    expected a selector: all_edges, between(query_group,key_group), between_regions(query_region,key_region), channels(name,...), cross_channel, cross_modal(include_cls), cross_region, from_cls, heads(index,...), layers(index,...), no_edges, reads_earlier, reads_later, same_channel, time_span(query_start,query_stop,key_start,key_stop,seconds), time_window(max_lag,min_lag=0), to_cls, unimodal(include_cls), within(group), within_region(region)
    """  # noqa: E501
    if isinstance(expr, EdgeSet):
        return expr
    check_type(expr, str, "an edge expression (such as 'cross_modal & heads(0,2)')", SpecError)
    return _Parser(expr).parse()

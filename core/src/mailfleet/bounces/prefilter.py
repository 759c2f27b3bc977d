"""Cheap necessary conditions for the phrase patterns (speed, same results).

Python's regex engine tries every alternative of a long phrase list at every position of the
text. Most texts contain none of a rule's words, so each pattern is given the literal words
one of which any match must contain (read from the compiled pattern's syntax tree); the
pattern runs only when ``str`` containment, which is fast, finds one of them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

_sre_parse: Any = getattr(re, "_parser", None)  # the standard library's own regex parser
if _sre_parse is not None:
    LITERAL, SUBPATTERN, BRANCH = _sre_parse.LITERAL, _sre_parse.SUBPATTERN, _sre_parse.BRANCH
    _REPEATS = (_sre_parse.MAX_REPEAT, _sre_parse.MIN_REPEAT, _sre_parse.POSSESSIVE_REPEAT)
    _ZERO_WIDTH = (_sre_parse.ASSERT, _sre_parse.ASSERT_NOT, _sre_parse.AT)

_SCAN_WORDS = 100
_MIN_WORD = 3
"""Literals shorter than this filter too little to be worth a check (two characters of a
non-Latin script, "無法", are rare enough)."""


def _selective(word: str) -> bool:
    return len(word) >= _MIN_WORD or (len(word) == 2 and not word.isascii())


def _needed(items: Any) -> list[str] | None:
    """Literals one of which every match of the sequence ``items`` contains, or None."""
    best: list[str] | None = None
    run: list[str] = []

    def consider(words: list[str] | None) -> None:
        nonlocal best
        # the most selective choice: fewest words, then the longest shortest word
        if words and all(_selective(w) for w in words) and (
                best is None or (len(words), -min(map(len, words)))
                < (len(best), -min(map(len, best)))):
            best = words

    for op, arg in items:
        if op is LITERAL:
            run.append(chr(arg))
            continue
        if op in _ZERO_WIDTH:
            continue  # it consumes nothing: the literals around it are adjacent in a match
        consider(["".join(run)] if run else None)
        run = []
        if op is SUBPATTERN:
            consider(_needed(arg[-1]))
        elif op is BRANCH:
            options = [_needed(branch) for branch in arg[1]]
            if all(options):
                consider([w for option in options if option for w in option])
        elif op in _REPEATS and arg[0] >= 1:
            consider(_needed(arg[2]))
    consider(["".join(run)] if run else None)
    return best


def needed_words(pattern: str) -> tuple[str, ...] | None:
    """Lower-case words one of which every match of ``pattern`` contains (None: unknown)."""
    if _sre_parse is None:
        return None
    try:
        tree = _sre_parse.parse(pattern)
    except (re.error, RecursionError):
        return None
    words = _needed(list(tree))
    return tuple(sorted({w.lower() for w in words})) if words else None


def alternatives(pattern: str) -> list[str]:
    """The top-level alternatives of ``pattern`` (split at ``|`` outside groups and sets)."""
    out: list[str] = []
    depth, in_set, start, i = 0, False, 0, 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 2
            continue
        if in_set:
            in_set = char != "]"
        elif char == "[":
            in_set = True
            if pattern.startswith(("[]", "[^]"), i):
                i += 2 if pattern.startswith("[]", i) else 3
                continue
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            out.append(pattern[start:i])
            start = i + 1
        i += 1
    out.append(pattern[start:])
    return out


def trie_pattern(words: list[str]) -> str:
    """A regex matching the longest of ``words`` at a position (a trie: one branch per
    next character, so the engine follows one path instead of trying every word)."""
    root: dict[str, Any] = {}
    for word in words:
        node = root
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def build(node: dict[str, Any]) -> str:
        ending = "" in node
        branches = [re.escape(char) + build(child)
                    for char, child in sorted(node.items()) if char]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        if ending:
            return ("(?:" + body + ")?") if len(branches) == 1 else body + "?"
        return body
    return build(root)


class _WordScan:
    """Which items' needed words occur in a text, found with one scan: a trie pattern of
    all the words, searched from each position where one starts (the longest word there,
    and every needed word that is a prefix of it)."""

    __slots__ = ("_always", "_by_word", "_scan")

    def __init__(self, needs: list[tuple[str, ...] | None]) -> None:
        self._always = frozenset(i for i, words in enumerate(needs) if words is None)
        index: dict[str, list[int]] = {}
        for item, words in enumerate(needs):
            for word in words or ():
                index.setdefault(word, []).append(item)
        self._by_word = {word: frozenset(i for other, items in index.items()
                                         if word.startswith(other) for i in items)
                         for word in index}
        self._scan = re.compile(trie_pattern(sorted(index))) if index else None

    def candidates(self, low: str) -> set[int]:
        """The items that can match ``low``: those with a needed word in it, or none."""
        found = set(self._always)
        if self._scan is None:
            return found
        # search, not a findall of a look-ahead: the engine skips to the next position where
        # a word can start; each start is tried once, so words that overlap are all found
        search = self._scan.search
        words: set[str] = set()
        match = search(low)
        while match is not None:
            words.add(match.group())
            match = search(low, match.start() + 1)
        for word in words:
            found |= self._by_word[word]
        return found


_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_CASELESS_CLASSES = frozenset("sSdDwWbBAZ")
"""Escapes whose meaning does not depend on case (``\\S`` matches lowered text as it does
the text)."""
_CODED = frozenset("xuUN0123456789")
"""Escapes that name a character by its code (it may be an upper-case letter)."""


def _lower_case(pattern: str) -> bool:
    """Whether ``pattern`` names no upper-case letter (escapes of the classes above aside)."""
    bare: list[str] = []
    pos = 0
    for match in _ESCAPE.finditer(pattern):
        if match.group(1) in _CODED:
            return False
        bare.append(pattern[pos:match.start()])
        if match.group(1) not in _CASELESS_CLASSES:
            bare.append(match.group(0))
        pos = match.end()
    bare.append(pattern[pos:])
    text = "".join(bare)
    return text == text.lower()


class _Alternative:
    __slots__ = ("folded", "lowered", "words")

    def __init__(self, pattern: str, flags: int) -> None:
        self.folded = re.compile(pattern, flags)
        lowered = bool(flags & re.IGNORECASE) and _lower_case(pattern)
        self.lowered = re.compile(pattern, flags & ~re.IGNORECASE) if lowered else None
        self.words = needed_words(pattern)


class Phrases:
    """A phrase pattern searched only where it can match.

    Each top-level alternative is compiled on its own with the literal words one of which
    its matches must contain; an alternative runs only when ``str`` containment (fast)
    finds one of them. A case-insensitive alternative written in lower case runs without
    IGNORECASE on the lower-cased text (several times faster; positions are the same when
    lower-casing keeps the length, else the case-insensitive form runs on the text)."""

    __slots__ = ("_parts", "_whole", "_words")

    def __init__(self, pattern: str, flags: int = 0) -> None:
        self._whole = _Alternative(pattern, flags)
        pieces = alternatives(pattern)
        self._parts = [_Alternative(p, flags) for p in pieces] if len(pieces) > 1 else [
            self._whole]
        # many needed words: which alternatives can match is found with one scan (a lookup
        # per word costs more from about a hundred words on)
        count = len({w for p in self._parts for w in p.words or ()})
        self._words = _WordScan([p.words for p in self._parts]) if count > _SCAN_WORDS else None

    @property
    def pattern(self) -> re.Pattern[str]:
        """The whole pattern, compiled as given."""
        return self._whole.folded

    @property
    def words(self) -> tuple[str, ...] | None:
        """Lower-case words one of which every match contains (None: not known)."""
        return self._whole.words

    def search(self, text: str, pos: int = 0, *, low: str | None = None) -> re.Match[str] | None:
        """The leftmost match, as ``pattern.search(text, pos)`` would give it (its start
        and end; groups are numbered within the alternative that matched); ``low`` is
        ``text.lower()`` when the caller has it."""
        if low is None:
            low = text.lower()
        same = len(low) == len(text)
        best: re.Match[str] | None = None
        for part in self._candidates(low):
            if part.lowered is not None and same:
                match = part.lowered.search(low, pos)
            else:
                match = part.folded.search(text, pos)
            if match and (best is None or match.start() < best.start()):
                best = match
                if best.start() == pos:
                    break
        return best

    def hit(self, text: str, *, low: str | None = None) -> bool:
        """Whether the pattern matches anywhere in ``text``."""
        if low is None:
            low = text.lower()
        same = len(low) == len(text)
        for part in self._candidates(low):
            if part.lowered is not None and same:
                if part.lowered.search(low):
                    return True
            elif part.folded.search(text):
                return True
        return False

    def _candidates(self, low: str) -> list[_Alternative]:
        """The alternatives that can match ``low``: one of their needed words is in it."""
        parts = (self._parts if self._words is None
                 else [self._parts[i] for i in sorted(self._words.candidates(low))])
        return [part for part in parts
                if part.words is None or any(word in low for word in part.words)]

    def groups(self, text: str, group: int = 1, *, low: str | None = None) -> list[str]:
        """Group ``group`` of every :meth:`finditer` match, as written in ``text``."""
        return [text[m.start(group):m.end(group)]
                for m in self.finditer(text, low=low) if m.start(group) >= 0]

    def finditer(self, text: str, *, low: str | None = None) -> Iterator[re.Match[str]]:
        """``pattern.finditer(text)`` (match positions are positions in ``text``)."""
        if low is None:
            low = text.lower()
        whole = self._whole
        if whole.words is not None:
            for word in whole.words:
                if word in low:
                    break
            else:
                return iter(())
        if whole.lowered is not None and len(low) == len(text):
            return whole.lowered.finditer(low)
        return whole.folded.finditer(text)


class RuleSet:
    """Ordered ``(label, pattern)`` rules over lower-case text, where the first rule that
    matches anywhere wins: one scan finds which needed words occur, and only the
    alternatives whose words occur (or that have none) are run, in rule order."""

    __slots__ = ("_alternatives", "_words", "labels")

    def __init__(self, rules: tuple[tuple[str, str], ...]) -> None:
        self.labels = tuple(label for label, _ in rules)
        self._alternatives = [(number, re.compile(piece))
                              for number, (_label, pattern) in enumerate(rules)
                              for piece in alternatives(pattern)]
        self._words = _WordScan([needed_words(p.pattern) for _n, p in self._alternatives])

    def matching(self, low: str) -> Iterator[int]:
        """Numbers of the rules that match ``low``, in rule order."""
        done = -1
        for position in sorted(self._words.candidates(low)):
            number, pattern = self._alternatives[position]
            if number != done and pattern.search(low):
                done = number
                yield number

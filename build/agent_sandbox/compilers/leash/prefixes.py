"""The prefix engine: which rules Leash's longest-prefix reading and Cedar's forbid-wins reading agree on
(pure); the conflicts it refuses name both rules."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from pathlib import PurePath

import attrs

from ...errors import Location, NotEnforceable
from .model import (
    _BAD_PATH_CHARS,
    FILE_OPEN,
    FILE_OPS,
    MAX_RULE_PATH_BYTES,
    READ_ROOT_BYTES,
    Effect,
    Entry,
    Op,
    Rule,
)


# ------------------------------------------------------------------ helpers
def _place(where: Location) -> str:
    """file:line with the file's name only (deterministic across checkouts)."""
    name = PurePath(str(where.file)).name
    return f"{name}:{where.line}" if where.line else name


def _cite(entry: Entry) -> str:
    return entry.label if entry.bootstrap else f"{entry.label} ({_place(entry.where)})"


def _entity(prefix: str) -> str:
    kind = "Dir" if prefix.endswith("/") else "File"
    return f'{kind}::"{prefix}"'


def _check_path(prefix: str, label: str, where: Location) -> None:
    if len(prefix.encode()) > MAX_RULE_PATH_BYTES:
        raise NotEnforceable(
            f"{label}: Leash ignores rule paths longer than {MAX_RULE_PATH_BYTES} bytes "
            f"({prefix!r} is {len(prefix.encode())}; internal/lsm/bpf/lsm_open.bpf.c); use a shorter parent path",
            where,
        )
    if any(c in _BAD_PATH_CHARS for c in prefix) or "::" in prefix:
        raise NotEnforceable(
            f"{label}: Leash cannot match {prefix!r} (quotes, backslashes, '::' or control characters)", where
        )


def _inherited(entries: Sequence[Entry], entry: Entry, op: Op) -> Effect:
    """The effect Leash would apply under `entry` without it: the longest shorter rule, else default deny."""
    best: Entry | None = None
    for other in entries:
        if other.effect(op) is None or len(other.prefix) >= len(entry.prefix) or not other.covers(entry.prefix):
            continue
        if best is None or len(other.prefix) > len(best.prefix):
            best = other
    effect = best.effect(op) if best is not None else None
    return effect if effect is not None else Effect.FORBID


def _permit_below(entries: Sequence[Entry], entry: Entry, op: Op) -> bool:
    return any(
        other.effect(op) is Effect.PERMIT and other.prefix != entry.prefix and entry.covers(other.prefix)
        for other in entries
    )


@attrs.frozen
class _Emit:
    entry: Entry
    op: Op
    effect: Effect


def _emits(entries: Sequence[Entry], ops: Sequence[Op]) -> list[_Emit]:
    """Per (rule, op): permits always; a forbid if it overrides a shorter permit or no permit lies under it."""
    out = []
    for entry in entries:
        for op in ops:
            effect = entry.effect(op)
            if effect is None:
                continue
            needed = effect is not _inherited(entries, entry, op)
            if effect is Effect.PERMIT or needed or not _permit_below(entries, entry, op):
                out.append(_Emit(entry, op, effect))
    return out


def _ties(entries: Sequence[Entry]) -> list[tuple[Entry, Entry]]:
    """Rules on the same path with different effects: Leash orders them arbitrarily."""
    out = []
    for a, b in itertools.combinations(entries, 2):
        if a.prefix == b.prefix and a.effects != b.effects:
            out.append((a, b))
    return out


def _shadowed(emits: Sequence[_Emit]) -> list[tuple[Entry, Entry]]:
    """(forbid, permit) pairs where the permit lies strictly under the forbid for the same operation."""
    out = []
    for f in emits:
        if f.effect is not Effect.FORBID:
            continue
        for p in emits:
            if (
                p.effect is Effect.PERMIT
                and p.op is f.op
                and p.entry.prefix != f.entry.prefix
                and f.entry.covers(p.entry.prefix)
            ):
                out.append((f.entry, p.entry))
    return out


def _dedupe(entries: Iterable[Entry]) -> list[Entry]:
    seen: dict[tuple[str, tuple[tuple[Op, Effect], ...]], Entry] = {}
    for entry in entries:
        seen.setdefault((entry.prefix, entry.effects), entry)
    return list(seen.values())


def _conflict(entries: Sequence[Entry], ops: Sequence[Op], cls: str) -> tuple[Entry, Entry, str] | None:
    """Two rules Leash and Cedar would read differently, with the reason; None if all agree."""
    for a, b in _ties(entries):
        source = "file_open" if cls == "filesystem" else "proc_exec"
        return (
            a,
            b,
            (
                f"{_cite(b)} and {_cite(a)} name the same path with opposite effects: Leash applies equal-length "
                f"{cls} rules in no defined order (internal/lsm/{source}.go sorts by length only); keep one of them"
            ),
        )
    for forbid, permit in _shadowed(_emits(entries, ops)):
        return (
            forbid,
            permit,
            (
                f"{_cite(permit)} lies under {_cite(forbid)}: Leash lets the longer path win (allow) but Cedar lets "
                "the forbid win (deny), so the policy would mean two things; move the exception out of the denied tree"
            ),
        )
    return None


def _resolve(entries: Sequence[Entry], ops: Sequence[Op], cls: str, leaf: str) -> list[_Emit]:
    """The emitted rules, or NotEnforceable naming the two rules Leash and Cedar would read differently.

    The error points at the rule written last: the profile's own file before its ancestors, then the later line.
    """
    found = _conflict(entries, ops, cls)
    if found is not None:
        a, b, message = found
        at_fault = max((a, b), key=lambda e: (not e.bootstrap, str(e.where.file) == leaf, e.where.line))
        raise NotEnforceable(message, at_fault.where)
    return _emits(entries, ops)


def _decision(entries: Sequence[Entry], prefix: str, op: Op) -> Effect:
    """Longest-prefix decision for a path starting with `prefix` (what the profile and Leash both say)."""
    best = max(
        (e for e in entries if e.effect(op) is not None and e.covers(prefix)), key=lambda e: len(e.prefix), default=None
    )
    effect = best.effect(op) if best is not None else None
    return effect if effect is not None else Effect.FORBID


def _with_bootstrap(
    entries: list[Entry], extra: Sequence[Entry], ops: Sequence[Op], cls: str
) -> tuple[list[Entry], list[str]]:
    """Add Leash's bootstrap permits that are missing and conflict with nothing; say what was done."""
    notes = []
    for boot in extra:
        if all(_decision(entries, boot.prefix, op) is Effect.PERMIT for op in ops):
            notes.append(f"Leash bootstrap: {boot.prefix} is already allowed by the profile.")
            continue
        if len(boot.prefix.encode()) > MAX_RULE_PATH_BYTES:  # Leash's kernel would skip it: Cedar alone would permit
            notes.append(
                f"Leash bootstrap: {boot.prefix} NOT added, Leash ignores rule paths over {MAX_RULE_PATH_BYTES} "
                "bytes; Leash's CA install may fail."
            )
            continue
        denier = next((e for e in entries if e.all_forbid and e.covers(boot.prefix)), None)
        found = _conflict([*entries, boot], ops, cls)
        if denier is None and found is not None:
            denier = found[0] if found[1] is boot else found[1]
        if denier is not None:
            notes.append(
                f"Leash bootstrap: {boot.prefix} NOT added, it conflicts with {_cite(denier)}; "
                "Leash's CA install may fail."
            )
            continue
        entries = [*entries, boot]
        notes.append(f"Leash bootstrap: {boot.prefix} added (cmd/leash-entry needs it).")
    return entries, notes


def _root_split(emits: list[_Emit], entries: Sequence[Entry], ops: Sequence[Op]) -> list[_Emit]:
    """Replace a permit on "/" by first-byte prefixes when some operation has no rule on "/".

    Leash's default for the class becomes ALLOW for every operation as soon as any permit names "/"
    (file_open.go checkRootPathPolicy); that agrees with Cedar only if each operation has its own rule on "/".
    """
    at_root = [e for e in emits if e.entry.prefix == "/"]
    if not any(e.effect is Effect.PERMIT for e in at_root) or {e.op for e in at_root} >= set(ops):
        return emits
    taken = {entry.prefix for entry in entries}
    out = [e for e in emits if not (e.entry.prefix == "/" and e.effect is Effect.PERMIT)]
    for root in (e for e in at_root if e.effect is Effect.PERMIT):
        for byte in READ_ROOT_BYTES:
            if "/" + byte not in taken:
                part = attrs.evolve(
                    root.entry, prefix="/" + byte, effects=((root.op, Effect.PERMIT),), group="read-root"
                )
                out.append(_Emit(part, root.op, Effect.PERMIT))
    return out


def _rules(emits: Sequence[_Emit]) -> list[Rule]:
    """One Rule per path and effect; read+write with one effect also gets FileOpen (any access mode)."""
    by_entry: dict[tuple[str, Effect], list[_Emit]] = {}
    for emit in emits:
        by_entry.setdefault((emit.entry.prefix, emit.effect), []).append(emit)
    rules = []
    for (prefix, effect), group in by_entry.items():
        ops = {e.op for e in group}
        actions = tuple(op.value for op in sorted(ops, key=lambda o: o.value))
        if ops == set(FILE_OPS):
            actions = (FILE_OPEN, *actions)
        entry = group[0].entry
        rules.append(Rule(effect, actions, _entity(prefix), _cite(entry), entry.group, entry.where, entry.bootstrap))
    return rules


def _check_count(cls: str, rules: Sequence[Rule], limit: int, source: str, leaf: str) -> None:
    """Leash makes one rule per action and resource; past its limit, name the rule that does not fit.

    Bootstrap rules count first, then the ancestors' rules, then the profile file's own, each in line order.
    """
    total = sum(len(rule.actions) for rule in rules)
    if total <= limit:
        return
    running = sum(len(rule.actions) for rule in rules if rule.bootstrap)
    order = sorted(
        (r for r in rules if not r.bootstrap), key=lambda r: (str(r.where.file) == leaf, r.where.line, r.resource)
    )
    for rule in order:
        running += len(rule.actions)
        if running > limit:
            raise NotEnforceable(
                f"{rule.label.rsplit(' (', 1)[0]}: {cls} needs {total} Leash rules (one per action and path), Leash "
                f"loads at most {limit} ({source}); this rule is past the limit - merge rules into a parent directory",
                rule.where,
            )


# An unrestricted class still gets a permit on everything: with no rules Leash would not enforce it (same result)
# but Cedar would deny everything, so the text would mean two things. This is Leash's own default policy
# (internal/policy/default_cedar_policy.go); it also makes Leash log the class.
_UNRESTRICTED = (
    "unrestricted: one permit on everything, as Leash's built-in default policy has; Leash then logs",
    "this class without refusing anything.",
)

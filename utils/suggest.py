"""Closest-match suggestions for misspelt names (registry misses, unknown option keys)."""
import difflib
from typing import Iterable, List


def closest(name: str, candidates: Iterable[str], n: int = 3, cutoff: float = 0.5) -> List[str]:
    """Return up to ``n`` candidates most similar to ``name`` (case-insensitive ranking)."""
    cands = list(candidates)
    lowered = {c.lower(): c for c in cands}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=cutoff)
    return [lowered[h] for h in hits]


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """A ready-to-append phrase: `` (did you mean 'x'?)`` or an empty string."""
    hits = closest(name, candidates, n=1)
    return f" (did you mean '{hits[0]}'?)" if hits else ""


def lookup(table: dict, name: str, kind: str, where: str):
    """``table[name]``; a miss raises a KeyError naming ``where``, the closest key and all keys."""
    if name not in table:
        raise KeyError(f"{where}.type: unknown {kind} '{name}'{did_you_mean(str(name), table)}; "
                       f"known: {', '.join(table)}")
    return table[name]

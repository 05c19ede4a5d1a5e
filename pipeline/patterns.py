"""--input values read as the user meant them.

- A local name that exists is taken literally, whatever it holds: ``My Photos/馬 #1 [x].png``
  is that file, not a glob class ``[x]``.
- WebDataset's brace notation is expanded, as its ``braceexpand`` does:
  ``shard-{000000..000002}.tar`` (zero-padded ranges), ``{train,val}/*.jpg`` (lists);
  ``\\{`` is a literal brace.
- A leading ``~`` or ``~user`` is the home folder, as a shell would have made it had the
  value not been quoted (``--input '~/photos/*'``), unless a name ``~`` exists here.
- What is left is Beam's glob syntax (``FileSystems.match``): ``*`` within one folder,
  ``**`` across folders, ``?``, ``[...]``. Beam has no escape character; ``escape_glob``
  writes each of ``* ? [`` as a one-character class (``[[]``), which Beam reads literally."""

from __future__ import annotations

import logging
import os

from braceexpand import UnbalancedBracesError, braceexpand

from pipeline.root import outputs

_log = logging.getLogger(__name__)
GLOB_CHARACTERS = "*?["
# One brace pattern makes at most this many patterns: each is matched on its own, so a
# launcher given {0..99999999} would list for hours; a glob lists a folder once.
MAX_BRACE_EXPANSION = 100_000


class PatternError(ValueError):
    """An --input value that cannot be read as a pattern (unbalanced or oversized braces)."""


def escape_glob(path: str) -> str:
    """``path`` as a pattern Beam matches literally: ``a[1]*.png`` -> ``a[[]1][*].png``."""
    return "".join(f"[{c}]" if c in GLOB_CHARACTERS else c for c in path)


def has_glob(pattern: str) -> bool:
    return any(c in pattern for c in GLOB_CHARACTERS)


def expand_braces(pattern: str) -> list[str]:
    """``pattern``'s brace expansions, in order, each once; ``[pattern]`` when it has no
    braces or names an existing local file or folder. Raises PatternError."""
    if "{" not in pattern or (outputs.is_local(pattern) and os.path.exists(pattern)):
        return [pattern]
    expanded: list[str] = []
    try:
        for value in braceexpand(pattern):
            expanded.append(value)
            if len(expanded) > MAX_BRACE_EXPANSION:
                raise PatternError(
                    f"--input {pattern!r} expands to more than {MAX_BRACE_EXPANSION:,} patterns; "
                    "use a glob (shard-*.tar) or a folder instead")
    except UnbalancedBracesError as exc:
        raise PatternError(f"--input {pattern!r}: {exc}; write a literal brace as \\{{") from exc
    unique = list(dict.fromkeys(expanded))
    if len(unique) > 1:
        _log.info("--input %s: braces expanded to %d patterns (%s ... %s)", pattern, len(unique),
                  unique[0], unique[-1])
    return unique


def literal_if_existing(absolute: str) -> str:
    """A local absolute path that exists and holds glob characters, escaped so that Beam
    matches that one file (or, for a folder, everything below it); anything else unchanged."""
    if not has_glob(absolute) or not os.path.exists(absolute):
        return absolute
    _log.info("--input %s exists: taken literally, not as a pattern", absolute)
    return escape_glob(absolute)


def home_expanded(path: str) -> str:
    """``~/x`` -> ``/home/me/x`` for a local ``path`` that does not exist as written."""
    if not path.startswith("~") or os.path.exists(path):
        return path
    expanded = os.path.expanduser(path)
    if expanded != path:
        _log.info("%s is %s (the home folder; quoted, the shell left it to us)", path, expanded)
    return expanded

"""What a shell did to --input before this program saw it.

An unquoted pattern (``--input photos/*.jpg``, ``--input shard-{0..2}.tar``) reaches the
program already expanded by the shell: ``--input photos/a.jpg photos/b.jpg photos/c.jpg``.
argparse keeps the first word as --input's value and Beam, left with the others, only warns
("Unparseable argument") and runs: the other files were silently dropped, exit 0.

``expand_shell_inputs`` gives every such word after an --input its own --input, so each
listed file is read. Any other word that no option takes is a usage error naming it, with
the advice to quote a pattern: no argument is ever dropped."""

from __future__ import annotations

import logging

_log = logging.getLogger(__name__)
INPUT = "--input"


class StrayArguments(ValueError):
    """Words on the command line that no option takes."""


def expand_shell_inputs(argv: list[str], stray: set[str]) -> list[str]:
    """``argv`` with each word of ``stray`` (words no option consumed, as argparse's
    parse_known_args reports them) that follows an --input's value given an --input of its
    own. Raises StrayArguments naming any other stray word."""
    result, leftover, after_input, moved = [], [], False, 0
    index = 0
    while index < len(argv):
        word = argv[index]
        if word == INPUT and index + 1 < len(argv):
            result += [word, argv[index + 1]]
            index += 2
            after_input = True
            continue
        if word.startswith(INPUT + "="):
            result.append(word)
            after_input = True
        elif not word.startswith("-") and word in stray and after_input:
            result += [INPUT, word]
            moved += 1
        else:
            if not word.startswith("-") and word in stray:
                leftover.append(word)
            after_input = False
            result.append(word)
        index += 1
    if leftover:
        shown = ", ".join(repr(word) for word in leftover[:3]) + (" ..." if len(leftover) > 3 else "")
        raise StrayArguments(
            f"{len(leftover)} argument(s) no option takes: {shown}. If your shell expanded a pattern, "
            "put it right after --input, or quote it ('photos/*.jpg') so that the pipeline expands it")
    if moved:
        _log.info("%d more paths after --input (a pattern your shell expanded): each is read; quote a "
                  "pattern to have it expanded here, with ** and gs:// too", moved)
    return result


def stray_words(argv: list[str], parser) -> set[str]:
    """Words of ``argv`` that ``parser`` (every option Beam and this job know) leaves over."""
    _, unknown = parser.parse_known_args(argv)
    return {word for word in unknown if not word.startswith("-")}

"""The Flex Template's metadata.json, generated from the CLI's own options parser so that
the template's parameters and the CLI cannot drift apart.

``python -m pipeline.template > deploy/metadata.json`` rewrites it; a test checks that the
committed file equals what this module generates."""

from __future__ import annotations

import argparse
import json
import re

from pipeline.options import options_parser, parse_bool

TEMPLATE_NAME = "ResNet50 multi-layer embeddings to Parquet"
TEMPLATE_DESCRIPTION = (
    "Reads images, decodes and resizes them to one shape, runs a multi-layer ResNet50 and "
    "writes per-layer embeddings, image metadata and per-image errors as Parquet, with a "
    "manifest written last. --mode incremental embeds only what is new under a root."
)
REQUIRED = ("input", "output")
_NUMBER_PATTERNS = {
    int: r"^[0-9]+$",
    float: r"^[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?$",
    parse_bool: r"^(true|false|True|False)$",
}


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    formatter = parser._get_formatter()  # pylint: disable=protected-access
    return " ".join(formatter._expand_help(action).split())  # pylint: disable=protected-access


def _regexes(action: argparse.Action) -> list[str]:
    if action.choices:
        return ["^(" + "|".join(re.escape(str(choice)) for choice in action.choices) + ")$"]
    pattern = _NUMBER_PATTERNS.get(action.type)
    return [pattern] if pattern else []


def template_metadata() -> dict:
    """Flex Template metadata: one parameter per CLI option, in the parser's order."""
    parser = options_parser()
    parameters = []
    for action in parser._actions:  # pylint: disable=protected-access
        parameter = {
            "name": action.dest,
            "label": action.dest.replace("_", " ").capitalize(),
            "helpText": _help(parser, action),
            "isOptional": action.dest not in REQUIRED,
        }
        regexes = _regexes(action)
        if regexes:
            parameter["regexes"] = regexes
        parameters.append(parameter)
    return {
        "name": TEMPLATE_NAME,
        "description": TEMPLATE_DESCRIPTION,
        "streaming": False,
        "parameters": parameters,
    }


def metadata_json() -> str:
    return json.dumps(template_metadata(), indent=2) + "\n"


if __name__ == "__main__":
    print(metadata_json(), end="")

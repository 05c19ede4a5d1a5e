"""README.md: its examples run against a real output, its tables match the code."""

import contextlib
import io
import os
import pathlib
import re

import pytest

from pipeline.options import help_text
from pipeline.run import EXIT_OK, run
from schemas import LAYER_NAMES, alias_of, layer_shape

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (REPO_ROOT / "README.md").read_text()


def test_layer_table_matches_layer_shape():
    rows = re.findall(r"^\| `(\w+)` \| (?:`(\w+)`)? *\| (\d+)×(\d+)×(\d+) \| (\d+)×(\d+)×(\d+) \| (\d+) \|$",
                      README, flags=re.M)
    assert [r[0] for r in rows] == list(LAYER_NAMES)
    for name, alias, *dims in rows:
        dims = [int(d) for d in dims]
        assert (alias or None) == alias_of(name)
        assert tuple(dims[0:3]) == layer_shape(name, 224)
        assert tuple(dims[3:6]) == layer_shape(name, "384x512")
        assert dims[6] == layer_shape(name, 224).channels


def test_every_option_is_documented():
    flags = set(re.findall(r"(--[a-z_]+)", help_text())) - {"--help"}
    table = README[README.index("| option |"):README.index("Exit codes")]
    for flag in flags:
        if flag in ("--runner", "--project", "--region", "--temp_location", "--direct_num_workers",
                    "--direct_running_mode"):
            continue
        assert f"`{flag}`" in table, flag


@pytest.fixture(scope="module")
def sample_output(tmp_path_factory):
    root = tmp_path_factory.mktemp("readme")
    argv = ["--input", str(REPO_ROOT / "samples/images/*"), "--output", str(root / "output"),
            "--weights", "random", "--image_size", "32", "--layers", "res4,res5"]
    assert run(argv) == EXIT_OK
    # An incremental root with two completed runs, for the "Incremental runs" examples.
    incremental = ["--input", str(REPO_ROOT / "samples/images/*"), "--output", str(root / "runs/embeddings"),
                   "--weights", "random", "--image_size", "32", "--layers", "res5", "--mode", "incremental"]
    assert run(incremental[:1] + [str(REPO_ROOT / "samples/images/[a-c]*")] + incremental[2:]) == EXIT_OK
    assert run(incremental) == EXIT_OK
    return root


PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[f"example{i}" for i in range(len(PYTHON_BLOCKS))])
def test_python_examples_run(block, sample_output):
    code = block.replace("'output/", f"'{sample_output}/output/").replace('"output/', f'"{sample_output}/output/')
    code = code.replace("'runs/", f"'{sample_output}/runs/").replace('"runs/', f'"{sample_output}/runs/')
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), {})
    text = printed.getvalue()
    assert text.strip()
    if "(8, 2048)" in block:
        assert "(8, 2048)" in text
    if "(8, 1024)" in block:
        assert "(8, 1024)" in text
    if "EmbedImages(config)" in block:
        assert text.split()[0] == "8" and "[2048]" in text
    if "RunInference(handler)" in block:
        assert sorted(text.splitlines()) == sorted(
            f"('{name}', (2048,))" for name in os.listdir(REPO_ROOT / "samples/images"))


def test_there_are_seven_examples():
    assert len(PYTHON_BLOCKS) == 7

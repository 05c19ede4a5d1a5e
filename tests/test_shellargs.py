"""pipeline/shellargs.py: a pattern the shell expanded after --input is read whole; any
other word no option takes is refused by name."""

import pytest

from pipeline.options import all_options_parser
from pipeline.shellargs import StrayArguments, expand_shell_inputs, stray_words


def _expand(argv):
    return expand_shell_inputs(argv, stray_words(argv, all_options_parser()))


def test_each_word_the_shell_put_after_input_gets_an_input_of_its_own():
    argv = ["--input", "p/a.jpg", "p/b.jpg", "p/c d.jpg", "--output", "out", "--input=q/x.png", "q/y.png"]
    assert _expand(argv) == ["--input", "p/a.jpg", "--input", "p/b.jpg", "--input", "p/c d.jpg",
                             "--output", "out", "--input=q/x.png", "--input", "q/y.png"]


def test_quoted_patterns_and_flag_values_are_left_as_they_are():
    argv = ["--input", "p/*.jpg", "--layers", "res4,res5", "--runner", "DirectRunner", "--output", "o"]
    assert _expand(argv) == argv


@pytest.mark.parametrize("argv", [
    ["stray.jpg", "--input", "a.jpg", "--output", "o"],
    ["--input", "a.jpg", "--output", "o", "b.jpg"],
])
def test_any_other_stray_word_is_refused_naming_it(argv):
    with pytest.raises(StrayArguments, match=r"1 argument\(s\) no option takes: '(stray|b)\.jpg'.*quote it"):
        _expand(argv)

"""pipeline/dofn_specs.py: the remembered scan answers as Beam's own does, per DoFn."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.coders import VarIntCoder
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import userstate
from apache_beam.transforms.timeutil import TimeDomain

from pipeline import dofn_specs
from tests.beam_helpers import local_test_pipeline

TOTAL = userstate.BagStateSpec("total", VarIntCoder())
FLUSH = userstate.TimerSpec("flush", TimeDomain.WATERMARK)


class Summing(beam.DoFn):
    def process(self, element, total=beam.DoFn.StateParam(TOTAL), flush=beam.DoFn.TimerParam(FLUSH)):
        total.add(element[1])
        flush.set(0)

    @userstate.on_timer(FLUSH)
    def emit(self, total=beam.DoFn.StateParam(TOTAL)):
        yield sum(total.read())


class Plain(beam.DoFn):
    def process(self, element):
        yield element


class Holder:
    def stateful(self, element, total=beam.DoFn.StateParam(TOTAL)):
        return [element]


def _spec_names(specs):
    states, timers = specs
    return sorted(s.name for s in states), sorted(t.name for t in timers)


@pytest.mark.parametrize("make", [
    Summing, Plain,
    lambda: beam.Map(lambda x: x).fn,                 # a plain function held by the instance
    lambda: beam.ParDo(Holder().stateful).fn,         # a bound method held by the instance
])
def test_the_same_answer_as_beams_scan_every_time(make):
    expected = _spec_names(dofn_specs._beams_scan(make()))
    for _ in range(3):
        assert _spec_names(dofn_specs.remembered_dofn_specs(make())) == expected


def test_an_instance_that_holds_another_method_is_scanned_for_its_own():
    plain, stateful = Plain(), Plain()
    stateful.process = Holder().stateful  # hides the class's process with a stateful one
    assert _spec_names(dofn_specs.remembered_dofn_specs(plain)) == ([], [])
    assert _spec_names(dofn_specs.remembered_dofn_specs(stateful)) == (["total"], [])
    shadowed = Plain()
    shadowed.process = None  # Beam's scan then skips process
    assert dofn_specs.remembered_dofn_specs(shadowed) == dofn_specs._beams_scan(shadowed)


def test_answers_are_fresh_sets_and_errors_are_raised_each_time():
    first = dofn_specs.remembered_dofn_specs(Summing())
    first[0].clear()
    assert _spec_names(dofn_specs.remembered_dofn_specs(Summing())) == (["total"], [FLUSH.name])

    class Twice(beam.DoFn):
        def process(self, element, a=beam.DoFn.StateParam(TOTAL), b=beam.DoFn.StateParam(TOTAL)):
            yield element

    for _ in range(2):
        with pytest.raises(ValueError, match="duplicate"):
            dofn_specs.remembered_dofn_specs(Twice())


def test_a_stateful_pipeline_runs_with_it_installed(monkeypatch):
    monkeypatch.setattr(userstate, "get_dofn_specs", userstate.get_dofn_specs)  # undone after the test
    dofn_specs.remember_dofn_specs()
    assert userstate.get_dofn_specs is dofn_specs.remembered_dofn_specs
    assert userstate.is_stateful_dofn(Summing()) and not userstate.is_stateful_dofn(Plain())
    with local_test_pipeline() as p:
        sums = p | beam.Create([("a", 1), ("a", 2), ("b", 5)]) | beam.ParDo(Summing())
        assert_that(sums, equal_to([3, 5]))

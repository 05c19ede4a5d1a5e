"""models/heap.py: what lives as long as the process leaves the collector's full passes,
once per reason; what is made later is still collected. Each test runs in a fresh Python,
so nothing here freezes the test process."""

from fresh_python import fresh_python as _python


def test_freezing_is_once_per_reason_and_later_cycles_are_still_collected():
    out = _python("""
        import gc, weakref
        from models.heap import freeze_long_lived

        class Node: pass
        def cycle():
            a, b = Node(), Node(); a.b, b.a = b, a
            return weakref.ref(a)

        gc.collect()
        before = cycle()                      # garbage already, but not yet collected
        first = freeze_long_lived("imports")
        frozen = gc.get_freeze_count()
        again = freeze_long_lived("imports")
        other = freeze_long_lived("model")
        after = cycle()                        # a later job's garbage
        gc.collect()
        print(first, again, other, frozen > 0, after() is None, before() is not None)
    """)
    assert out == "True False True True True True"


def test_a_worker_freezes_what_it_imported_when_its_prepare_step_is_set_up():
    out = _python("""
        import gc
        from schemas import ExtractionConfig
        from transforms.prepare import PrepareBatches, _PrepareFn
        config = ExtractionConfig(layers=("res2",), batch_size=4, weights="random")
        transform = PrepareBatches(config)
        fn = _PrepareFn(transform._steps)
        print(gc.get_freeze_count())
        fn.setup()
        print(gc.get_freeze_count())
    """)
    before, after = map(int, out.split())
    assert before == 0 and after > 100_000  # Beam, Pillow, pyarrow and numpy at least
